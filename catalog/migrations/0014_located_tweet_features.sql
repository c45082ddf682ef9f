-- The posts' OGC API Features layer holds the located posts only: the GeoJSON feature schema of OGC API -
-- Features Part 1 (what the ogctests suite validates) has no null geometry. Unlocated posts stay in
-- eofusion.tweets, in late-fusion-search and in their collection; they have no place on a map.
CREATE OR REPLACE VIEW eofusion.tweet_features AS
SELECT t.collection || '.' || t.id AS fid,
       t.id AS tweet_id,
       t.collection,
       t.datetime,
       t.text,
       t.lang,
       array_to_string(t.hashtags, ' ') AS hashtags,
       t.event,
       t.location_source,
       t.location_confidence,
       t.geometry
FROM eofusion.tweets t
WHERE t.geometry IS NOT NULL;
