-- Views that OGC API Features (pygeoapi) serves as layers, so QGIS loads the catalogue
-- without knowing STAC. Feature ids are "<collection>.<item id>" (unique across collections).
CREATE VIEW eofusion.scene_features AS
SELECT i.collection || '.' || i.id AS fid,
       i.id AS item_id,
       i.collection,
       i.datetime,
       i.content -> 'properties' ->> 'platform' AS platform,
       i.content -> 'properties' ->> 'constellation' AS constellation,
       (i.content -> 'properties' ->> 'eofusion:patches')::integer AS patches,
       i.geometry
FROM pgstac.items i
WHERE i.content -> 'properties' ->> 'eofusion:kind' = 'scene';

CREATE VIEW eofusion.patch_features AS
SELECT i.collection || '.' || i.id AS fid,
       i.id AS item_id,
       i.collection,
       i.datetime,
       i.content -> 'properties' ->> 'eofusion:scene' AS scene,
       (i.content -> 'properties' ->> 'eofusion:grid_level')::integer AS grid_level,
       i.content -> 'properties' ->> 'eofusion:parent' AS parent,
       i.content -> 'properties' ->> 'eofusion:sensors' AS sensors,
       (SELECT string_agg(l.path, '; ' ORDER BY l.path)
          FROM eofusion.ground_truth g JOIN eofusion.labels l ON l.id = g.label_id
         WHERE g.collection = i.collection AND g.item_id = i.id) AS ground_truth,
       i.geometry
FROM pgstac.items i
WHERE i.content -> 'properties' ->> 'eofusion:kind' = 'patch';

CREATE VIEW eofusion.annotation_features AS
SELECT a.id::text AS fid,
       a.collection,
       a.item_id,
       l.path AS label,
       l.level AS label_level,
       a.session_id::text AS session_id,
       a.round,
       a.user_id,
       a.score,
       a.created_at AS datetime,
       a.geometry
FROM eofusion.annotations a JOIN eofusion.labels l ON l.id = a.label_id;

CREATE VIEW eofusion.tweet_features AS
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
FROM eofusion.tweets t;
