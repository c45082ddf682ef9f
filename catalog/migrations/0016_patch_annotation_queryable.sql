-- Patches list the labels users gave them (catalog.load.refresh_annotation_labels), so one search can ask
-- "similar to this patch, annotated Urban Area" or "not yet labelled Forest" with CQL2.
INSERT INTO pgstac.queryables (name, definition, property_wrapper, property_index_type) VALUES
  ('eofusion:annotations', '{"title": "Annotation labels of the patch (catalogue paths and their level-1 classes)", '
   '"type": "array", "items": {"type": "string"}}', 'to_text_array', NULL);
-- Patches annotated before this migration get the list now (the same statement as refresh_annotation_labels).
WITH labels AS (
    SELECT a.collection, a.item_id, array_agg(DISTINCT x ORDER BY x) AS names
    FROM eofusion.annotations a
    JOIN eofusion.labels l ON l.id = a.label_id
    LEFT JOIN eofusion.labels p ON p.id = l.parent_id
    CROSS JOIN LATERAL unnest(ARRAY[l.path, COALESCE(p.path, l.path)]) x
    GROUP BY 1, 2)
UPDATE pgstac.items i SET content = jsonb_set(i.content, '{properties,eofusion:annotations}', to_jsonb(labels.names))
FROM labels WHERE i.collection = labels.collection AND i.id = labels.item_id;
-- Every other patch gets an empty list, so that "NOT a_contains(eofusion:annotations, ...)" (not yet labelled)
-- finds it: a missing property makes the predicate NULL.
UPDATE pgstac.items SET content = jsonb_set(content, '{properties,eofusion:annotations}', '[]'::jsonb)
WHERE content->'properties'->>'eofusion:kind' = 'patch' AND NOT content->'properties' ? 'eofusion:annotations';
