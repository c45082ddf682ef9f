"""Tuned connections for similarity search (catalog.similarity.tuned_pool): the search settings live in the
session, so the HNSW ranking is one statement with no transaction, and results equal those of a plain connection.
Real EuroSAT-MS patches in the test cluster."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from catalog import similarity
from tests.conftest import analyse_items

REF = {"collection": "eurosat", "item": "River_1237"}
# A selective filter with more than two pages of 5 in any sample (64 patches of 216, 15 of the fixture's 50).
HIGHWAY = {"op": "a_overlaps", "args": [{"property": "eofusion:source_labels"}, ["Highway", "River", "SeaLake"]]}


class StatementLog:
    """The statements a connection sends (asyncpg's query logger: one record per execute/fetch call)."""

    def __init__(self, conn: Any) -> None:
        self.statements: list[str] = []
        conn.add_query_logger(self._record)

    def _record(self, record: Any) -> None:
        self.statements.append(record.query)

    async def take(self) -> list[str]:
        await asyncio.sleep(0)  # asyncpg hands the records over with loop.call_soon
        out, self.statements = self.statements, []
        return out


def run_on_pool(db_url: str, body: Callable[[Any], Awaitable[Any]]) -> Any:
    """Run ``body(pool)`` on a fresh one-connection tuned pool (so every acquire returns the same session)."""
    async def go() -> Any:
        pool = await similarity.tuned_pool(db_url, min_size=1, max_size=1)
        try:
            return await body(pool)
        finally:
            await pool.close()

    return asyncio.run(go())


async def shown(conn: Any, *names: str) -> dict[str, str]:
    return {n: await conn.fetchval(f"SHOW {n}") for n in names}


def test_tuned_session_settings_survive_release_and_reset(db_url: str, archives: dict) -> None:
    async def body(pool: Any) -> None:
        async with pool.acquire() as conn:
            assert similarity.tuned_connection(conn) is not None
            first_pid = conn.get_server_pid()
            q = await similarity.query_vector(conn, "s2", REF)
            where = await similarity.where_clause(conn, {"collections": ["eurosat"]})
            await similarity.nearest(conn, "s2", q, where, 100, exact_below=0)  # ef_search 200
            assert conn.ef_search == 200
            # A transaction left open is rolled back at release; the session's settings are not reset.
            await conn.execute("BEGIN; SET LOCAL jit = on")
        async with pool.acquire() as conn:
            assert conn.get_server_pid() == first_pid and not conn.is_in_transaction()
            assert await shown(conn, "jit", "plan_cache_mode", "hnsw.iterative_scan", "hnsw.ef_search",
                               "application_name", "search_path") == {
                "jit": "off", "plan_cache_mode": "force_generic_plan", "hnsw.iterative_scan": "relaxed_order",
                "hnsw.ef_search": "200", "application_name": similarity.TUNED_APPLICATION,
                "search_path": "pgstac,public"}
            assert conn.ef_search == 200
            # Startup parameters are the reset values: even RESET ALL keeps the search settings (ef_search goes
            # back to its startup value, and the tracker must be told).
            await conn.execute("RESET ALL")
            tuned = similarity.tuned_connection(conn)
            assert tuned is not None
            tuned.ef_search = None
            assert await shown(conn, "jit", "plan_cache_mode", "hnsw.iterative_scan", "hnsw.ef_search") == {
                "jit": "off", "plan_cache_mode": "force_generic_plan", "hnsw.iterative_scan": "relaxed_order",
                "hnsw.ef_search": str(similarity.EF_SEARCH)}

    run_on_pool(db_url, body)


def test_plain_connections_are_not_tuned(db_url: str) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(db_url)
        pool = await asyncpg.create_pool(db_url, min_size=1, max_size=1)
        try:
            assert similarity.tuned_connection(conn) is None
            async with pool.acquire() as pooled:
                assert similarity.tuned_connection(pooled) is None
        finally:
            await conn.close()
            await pool.close()

    asyncio.run(go())


def test_ef_search_is_set_only_when_the_search_needs_another_value(db_url: str, archives: dict) -> None:
    async def body(pool: Any) -> list[tuple[int, list[str], str, int | None]]:
        async with pool.acquire() as conn:
            q = await similarity.query_vector(conn, "s2", REF)
            where = await similarity.where_clause(conn, {"collections": ["eurosat"]})
            log = StatementLog(conn)
            out = []
            for limit in (10, 10, 100, 100, 5, 200, 10):
                await similarity.nearest(conn, "s2", q, where, limit, exact_below=0)
                sets = [s for s in await log.take() if s.startswith("SET")]
                out.append((limit, sets, await conn.fetchval("SHOW hnsw.ef_search"), conn.ef_search))
                await log.take()
            return out

    steps = run_on_pool(db_url, body)
    for limit, _, ef_shown, tracked in steps:
        ef = similarity.ef_search(limit)
        assert ef_shown == str(ef) and tracked == ef, (limit, ef_shown, tracked)
    assert [s for _, s, _, _ in steps] == [[], [], ["SET hnsw.ef_search = 200"], [],
                                            [f"SET hnsw.ef_search = {similarity.EF_SEARCH}"],
                                            ["SET hnsw.ef_search = 400"],
                                            [f"SET hnsw.ef_search = {similarity.EF_SEARCH}"]]


def test_hnsw_search_on_a_tuned_connection_is_its_query_alone(db_url: str, archives: dict) -> None:
    """No BEGIN, SET LOCAL or COMMIT: once the statement is prepared and the planner's estimate cached, a search
    (forced to the index, or sent there by the estimate) is one statement outside any transaction."""
    analyse_items(db_url)

    async def body(pool: Any) -> dict[str, list[str]]:
        async with pool.acquire() as conn:
            q = await similarity.query_vector(conn, "s2", REF)
            where = await similarity.where_clause(conn, {"collections": ["eurosat"]})
            log = StatementLog(conn)
            out: dict[str, list[str]] = {}
            for label, below in (("forced", 0), ("estimate", 2)):  # see test_tuned_and_plain_..._alike
                await similarity.nearest(conn, "s2", q, where, 10, exact_below=below)  # prepares, estimates
                await log.take()
                await similarity.nearest(conn, "s2", q, where, 10, exact_below=below)
                out[label] = await log.take()
                assert not conn.is_in_transaction()
            # A selective filter (counted, ranked exactly) still takes its transaction.
            await similarity.nearest(conn, "s2", q, where, 10)
            out["exact"] = await log.take()
            return out

    got = run_on_pool(db_url, body)
    for label in ("forced", "estimate"):
        assert len(got[label]) == 1 and got[label][0].startswith("WITH c AS MATERIALIZED"), got[label]
    assert got["exact"][0].startswith("BEGIN; SET LOCAL") and got["exact"][-1] == "COMMIT", got["exact"]


def test_tuned_and_plain_connections_rank_alike(db_url: str, archives: dict) -> None:
    """Same rows on both paths: every exact_below (index, estimate, count), pages, a selective filter and a page
    the iterative scan alone could not fill."""
    # (limit, offset, exact_below). The planner estimates the eurosat items (216 or 50) once the partition is
    # analysed: exact_below 2 sends the unfiltered search to the index by the estimate; 10 makes it count the rows.
    analyse_items(db_url)
    cases = [(10, 0, 0), (10, 0, 2), (10, 0, 10), (10, 0, similarity.EXACT_BELOW), (5, 0, 0), (5, 5, 2),
             (10, 0, 2), (100, 0, 2), (1000, 0, 2), (15, 5, 0)]

    async def rank(conn: Any) -> list[list[tuple[str, float]]]:
        q = await similarity.query_vector(conn, "s2", REF)
        everything = await similarity.where_clause(conn, {"collections": ["eurosat"]})
        narrow = await similarity.where_clause(conn, {"collections": ["eurosat"], "filter-lang": "cql2-json",
                                                      "filter": HIGHWAY})
        out = []
        for where in (everything, narrow):
            for limit, offset, below in cases:
                found = await similarity.nearest(conn, "s2", q, where, limit, offset, exact_below=below)
                out.append([(n.item_id, n.distance) for n in found])
        return out

    async def plain() -> list[list[tuple[str, float]]]:
        conn = await asyncpg.connect(db_url, server_settings={"search_path": "pgstac,public"})
        try:
            return await rank(conn)
        finally:
            await conn.close()

    async def tuned(pool: Any) -> list[list[tuple[str, float]]]:
        async with pool.acquire() as conn:
            return await rank(conn)

    expected = asyncio.run(plain())
    assert run_on_pool(db_url, tuned) == expected
    assert all(expected) and expected[4] + expected[5] == expected[6]  # pages follow each other
    assert len(expected[8]) == archives["eurosat"].patches  # the index scan ran short: ranked exactly


def test_tuned_connection_inside_a_transaction_keeps_the_callers_settings(db_url: str, archives: dict) -> None:
    async def body(pool: Any) -> None:
        async with pool.acquire() as conn:
            q = await similarity.query_vector(conn, "s2", REF)
            where = await similarity.where_clause(conn, {"collections": ["eurosat"]})
            alone = await similarity.nearest(conn, "s2", q, where, 10, exact_below=0)
            await similarity.nearest(conn, "s2", q, where, 100, exact_below=0)
            assert conn.ef_search == 200
            async with conn.transaction():
                inside = await similarity.nearest(conn, "s2", q, where, 10, exact_below=0)
                assert await conn.fetchval("SHOW hnsw.ef_search") == "200"  # a savepoint, rolled back
                with pytest.raises(RuntimeError):
                    await conn.use_ef_search(64)
            assert conn.ef_search == 200 and await conn.fetchval("SHOW hnsw.ef_search") == "200"
            assert inside == alone

    run_on_pool(db_url, body)


def test_connect_tuned_gives_the_pools_session(db_url: str, archives: dict) -> None:
    async def go() -> None:
        conn = await similarity.connect_tuned(db_url)
        try:
            assert similarity.tuned_connection(conn) is conn and conn.ef_search == similarity.EF_SEARCH
            assert await shown(conn, "jit", "plan_cache_mode", "hnsw.iterative_scan", "hnsw.ef_search") == {
                "jit": "off", "plan_cache_mode": "force_generic_plan", "hnsw.iterative_scan": "relaxed_order",
                "hnsw.ef_search": str(similarity.EF_SEARCH)}
        finally:
            await conn.close()

    asyncio.run(go())
