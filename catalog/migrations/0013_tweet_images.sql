-- Photos of posts: one row per image of a post (a post may carry several), with the image model's
-- outputs for the "image" and "concepts" modalities of late fusion. Posts without images have no
-- rows: the modality is simply absent for them.
--   features: pooled CNN features (EfficientNet-Lite0, 1280-d, unit length), searched by cosine;
--   concepts: square roots of the 1000 ImageNet class probabilities (unit length, so the cosine is
--             the Bhattacharyya coefficient of the two class distributions);
--   top_concepts: the most probable classes as [{"class": index, "p": probability}, ...].
CREATE TABLE eofusion.tweet_images (
    collection   text NOT NULL,
    tweet_id     text NOT NULL,
    idx          smallint NOT NULL CHECK (idx >= 0),
    source       text NOT NULL,
    sha256       text NOT NULL,
    width        integer NOT NULL,
    height       integer NOT NULL,
    model        text NOT NULL,
    features     vector(1280) NOT NULL,
    concepts     vector(1000) NOT NULL,
    top_concepts jsonb NOT NULL DEFAULT '[]',
    created      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (collection, tweet_id, idx),
    FOREIGN KEY (collection, tweet_id) REFERENCES eofusion.tweets (collection, id) ON DELETE CASCADE
);
CREATE INDEX tweet_images_features_hnsw ON eofusion.tweet_images USING hnsw (features vector_cosine_ops)
    WITH (m = 16, ef_construction = 64);
CREATE INDEX tweet_images_concepts_hnsw ON eofusion.tweet_images USING hnsw (concepts vector_cosine_ops)
    WITH (m = 16, ef_construction = 64);
-- Top concept classes, for filters such as "posts with a photo of class 285".
CREATE INDEX tweet_images_top_concepts_idx ON eofusion.tweet_images USING gin (top_concepts jsonb_path_ops);
