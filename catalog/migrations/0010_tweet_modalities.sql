-- Tweets: typed text embeddings with an HNSW (cosine) index, and which model embedded each collection.
ALTER TABLE eofusion.tweets ALTER COLUMN embedding TYPE vector(384);
CREATE INDEX tweets_embedding_hnsw ON eofusion.tweets USING hnsw (embedding vector_cosine_ops)
    WITH (m = 16, ef_construction = 64);
CREATE TABLE eofusion.tweet_collections (
    collection      text PRIMARY KEY,
    embedding_model text,
    description     text NOT NULL DEFAULT '',
    updated_at      timestamptz NOT NULL DEFAULT now()
);
