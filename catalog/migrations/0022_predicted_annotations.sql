-- Annotations predicted by a session's model on patches outside its pool (the apply-model process), beside
-- the accepted ones. ``kind`` tells them apart; ``model`` names the model that scored the patch
-- (catalog.predictions.model_id: session and round). A prediction never replaces an accepted annotation of
-- the same patch and label (catalog.annotations.add_annotations).
ALTER TABLE eofusion.annotations
    ADD COLUMN kind text NOT NULL DEFAULT 'accepted' CHECK (kind IN ('accepted', 'predicted')),
    ADD COLUMN model text;

-- The OGC layer shows both (columns appended: CREATE OR REPLACE VIEW keeps the existing ones in place).
CREATE OR REPLACE VIEW eofusion.annotation_features AS
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
       a.geometry,
       a.kind,
       a.model
FROM eofusion.annotations a JOIN eofusion.labels l ON l.id = a.label_id;

-- Annotation items are searched by kind (accepted or predicted) and by the model that predicted them.
INSERT INTO pgstac.queryables (name, definition, property_wrapper, property_index_type) VALUES
  ('eofusion:annotation_kind', '{"title": "Annotation kind", "type": "string", "enum": ["accepted", "predicted"]}',
   'to_text', NULL),
  ('eofusion:model', '{"title": "Model that predicted the annotation", "type": "string"}', 'to_text', NULL);
