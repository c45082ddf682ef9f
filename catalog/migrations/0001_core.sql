-- EOFusion's own tables, beside pgstac (which keeps the STAC item JSON).
-- Everything is keyed by (collection, item_id) so it joins to pgstac.items.
CREATE EXTENSION IF NOT EXISTS postgis WITH SCHEMA public;
-- In public, where every search path (ours, pgstac's pools) finds the type and its operators.
CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA public;
CREATE SCHEMA IF NOT EXISTS eofusion;

-- The two-level label catalogue; user-defined labels hang under a level-1 class.
CREATE TABLE eofusion.labels (
    id           serial PRIMARY KEY,
    level        smallint NOT NULL CHECK (level IN (1, 2)),
    parent_id    integer REFERENCES eofusion.labels (id) ON DELETE RESTRICT,
    name         text NOT NULL,
    path         text NOT NULL UNIQUE,          -- "Forest" or "Forest / Mixed forest"
    description  text NOT NULL DEFAULT '',
    corine_codes text[] NOT NULL DEFAULT '{}',
    color        text,                          -- #rrggbb for maps and label rasters
    user_defined boolean NOT NULL DEFAULT false,
    created_by   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CHECK ((level = 1) = (parent_id IS NULL)),
    UNIQUE (parent_id, name)
);

-- Patch descriptors. Dimensions are fixed per descriptor kind by later migrations
-- (HNSW needs typed columns); untyped here so the foundation does not guess them.
CREATE TABLE eofusion.descriptors (
    collection text NOT NULL,
    item_id    text NOT NULL,
    fused      vector,
    s1         vector,
    s2         vector,
    hash       bit varying,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (collection, item_id)
);

-- Ground truth shipped with patch archives, kept apart from user annotations.
CREATE TABLE eofusion.ground_truth (
    collection   text NOT NULL,
    item_id      text NOT NULL,
    label_id     integer NOT NULL REFERENCES eofusion.labels (id),
    source_label text NOT NULL,                  -- the archive's own class name
    PRIMARY KEY (collection, item_id, label_id, source_label)
);

-- Active-learning sessions, their feedback and rounds.
CREATE TABLE eofusion.sessions (
    id          uuid PRIMARY KEY,
    pool        text NOT NULL,                   -- collection searched
    level       integer,                         -- grid level (patch size in px), NULL = all
    descriptor  text NOT NULL CHECK (descriptor IN ('fused', 's1', 's2')),
    parent_id   uuid REFERENCES eofusion.sessions (id),
    created_by  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    state       text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'accepted', 'closed'))
);

CREATE TABLE eofusion.feedback (
    session_id uuid NOT NULL REFERENCES eofusion.sessions (id) ON DELETE CASCADE,
    collection text NOT NULL,
    item_id    text NOT NULL,
    positive   boolean NOT NULL,
    round      integer NOT NULL,
    user_id    text,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, collection, item_id)
);

CREATE TABLE eofusion.rounds (
    session_id uuid NOT NULL REFERENCES eofusion.sessions (id) ON DELETE CASCADE,
    round      integer NOT NULL,
    model      bytea,
    metrics    jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, round)
);

-- Semantic annotations: a patch may carry several labels.
CREATE TABLE eofusion.annotations (
    id         bigserial PRIMARY KEY,
    collection text NOT NULL,
    item_id    text NOT NULL,
    label_id   integer NOT NULL REFERENCES eofusion.labels (id),
    session_id uuid REFERENCES eofusion.sessions (id) ON DELETE SET NULL,
    round      integer,
    user_id    text,
    score      double precision,
    geometry   geometry(Geometry, 4326),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (collection, item_id, label_id)
);
CREATE INDEX annotations_label_idx ON eofusion.annotations (label_id);
CREATE INDEX annotations_geom_idx ON eofusion.annotations USING gist (geometry);

-- Tweets: a STAC-like collection searchable by text, time and place at once.
CREATE TABLE eofusion.tweets (
    collection      text NOT NULL DEFAULT 'tweets',
    id              text NOT NULL,
    datetime        timestamptz,
    geometry        geometry(Point, 4326),
    text            text NOT NULL,
    lang            text,
    hashtags        text[] NOT NULL DEFAULT '{}',
    user_hash       text,
    media           jsonb NOT NULL DEFAULT '[]',
    event           text,
    properties      jsonb NOT NULL DEFAULT '{}',
    location_source text,                        -- geotag | gazetteer | geocoder
    location_confidence real,
    tsv             tsvector GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED,
    embedding       vector,
    image_features  vector,
    PRIMARY KEY (collection, id)
);
CREATE INDEX tweets_geom_idx ON eofusion.tweets USING gist (geometry);
CREATE INDEX tweets_datetime_idx ON eofusion.tweets (datetime);
CREATE INDEX tweets_tsv_idx ON eofusion.tweets USING gin (tsv);
