-- Re-embedding a collection with another text embedder (e.g. posts ingested fast with the static embedder,
-- later given MiniLM vectors): new vectors are staged here, batch by batch (a killed run resumes), and swapped
-- into eofusion.tweets in one transaction with the collection's recorded model, so queries never see a mix.
CREATE TABLE eofusion.tweet_reembedding (
    collection text NOT NULL,
    id         text NOT NULL,
    model      text NOT NULL,
    embedding  vector(384) NOT NULL,
    PRIMARY KEY (collection, id)
);
