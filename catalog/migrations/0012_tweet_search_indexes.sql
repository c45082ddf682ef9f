-- Tweets at scale (bench/late_fusion.py, 1M posts): indexes the per-collection searches can use whatever
-- the other collections of the table hold.
-- Time: the nearest posts of one collection on both sides of an instant are two short range scans.
CREATE INDEX tweets_collection_datetime_idx ON eofusion.tweets (collection, datetime);
-- Place: KNN (geometry <-> point) restricted to one collection by the index itself (btree_gist, which
-- pgstac's migration installs), not by filtering a walk over every collection's posts. It replaces the
-- geometry-only index, which the planner preferred while it read other collections' posts from the heap;
-- spatial filters without a collection still use it (one descent per collection).
CREATE EXTENSION IF NOT EXISTS btree_gist;
CREATE INDEX tweets_collection_geom_idx ON eofusion.tweets USING gist (collection, geometry);
DROP INDEX eofusion.tweets_geom_idx;
-- The embedding stage finds the posts still to embed without scanning the collection each batch;
-- the partial index empties itself as embeddings are written.
CREATE INDEX tweets_to_embed_idx ON eofusion.tweets (collection, id) WHERE embedding IS NULL;
