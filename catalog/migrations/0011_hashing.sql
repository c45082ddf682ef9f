-- Learned search models of a collection: deep hashing (binary codes searched by Hamming distance) and
-- text-to-patch projections (free text -> patches). A model row keeps the trained network (bytea, the
-- format of eofusion.hashing / eofusion.text2patch) and the STAC item that publishes it (collection "models").
-- At most one model of each family is active per collection: the one searches use.

CREATE TABLE eofusion.hash_models (
    id              uuid PRIMARY KEY,
    collection      text NOT NULL,
    descriptor      text NOT NULL CHECK (descriptor IN ('fused', 's1', 's2')),
    bits            smallint NOT NULL CHECK (bits IN (32, 64, 128)),
    created         timestamptz NOT NULL DEFAULT now(),
    active          boolean NOT NULL DEFAULT false,
    model           bytea NOT NULL,
    metadata        jsonb NOT NULL DEFAULT '{}',
    stac_collection text,
    stac_item_id    text
);
CREATE UNIQUE INDEX hash_models_one_active ON eofusion.hash_models (collection) WHERE active;

-- Codes live in their own table rather than in eofusion.descriptors.hash: K differs between models
-- (32/64/128), while an HNSW index needs a fixed bit(K). One partial expression index per K keeps
-- each usable: a query must say "bits = K" and order by "code::bit(K) <~> ...".
CREATE TABLE eofusion.hash_codes (
    model_id   uuid NOT NULL REFERENCES eofusion.hash_models (id) ON DELETE CASCADE,
    collection text NOT NULL,
    item_id    text NOT NULL,
    bits       smallint NOT NULL CHECK (bits IN (32, 64, 128)),
    code       bit varying NOT NULL CHECK (length(code) = bits),
    PRIMARY KEY (model_id, collection, item_id)
);
CREATE INDEX hash_codes_item_idx ON eofusion.hash_codes (collection, item_id);
CREATE INDEX hash_codes_hnsw_32 ON eofusion.hash_codes USING hnsw ((code::bit(32)) bit_hamming_ops)
    WITH (m = 16, ef_construction = 64) WHERE bits = 32;
CREATE INDEX hash_codes_hnsw_64 ON eofusion.hash_codes USING hnsw ((code::bit(64)) bit_hamming_ops)
    WITH (m = 16, ef_construction = 64) WHERE bits = 64;
CREATE INDEX hash_codes_hnsw_128 ON eofusion.hash_codes USING hnsw ((code::bit(128)) bit_hamming_ops)
    WITH (m = 16, ef_construction = 64) WHERE bits = 128;
COMMENT ON COLUMN eofusion.descriptors.hash IS 'unused: binary codes are kept per model in eofusion.hash_codes';

-- Text-to-patch: the shared space has a fixed dimension (64) so that the patch embeddings can be typed
-- and indexed (cosine HNSW).
CREATE TABLE eofusion.text2patch_models (
    id              uuid PRIMARY KEY,
    collection      text NOT NULL,
    descriptor      text NOT NULL CHECK (descriptor IN ('fused', 's1', 's2')),
    dim             smallint NOT NULL CHECK (dim = 64),
    created         timestamptz NOT NULL DEFAULT now(),
    active          boolean NOT NULL DEFAULT false,
    model           bytea NOT NULL,
    metadata        jsonb NOT NULL DEFAULT '{}',
    stac_collection text,
    stac_item_id    text
);
CREATE UNIQUE INDEX text2patch_models_one_active ON eofusion.text2patch_models (collection) WHERE active;

CREATE TABLE eofusion.text2patch_embeddings (
    model_id   uuid NOT NULL REFERENCES eofusion.text2patch_models (id) ON DELETE CASCADE,
    collection text NOT NULL,
    item_id    text NOT NULL,
    embedding  vector(64) NOT NULL,
    PRIMARY KEY (model_id, collection, item_id)
);
CREATE INDEX text2patch_embeddings_item_idx ON eofusion.text2patch_embeddings (collection, item_id);
CREATE INDEX text2patch_embeddings_hnsw ON eofusion.text2patch_embeddings USING hnsw (embedding vector_cosine_ops)
    WITH (m = 16, ef_construction = 64);
