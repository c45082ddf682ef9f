-- Annotation items are searched by label: index it.
INSERT INTO pgstac.queryables (name, definition, property_wrapper, property_index_type) VALUES
  ('eofusion:label', '{"title": "Annotation label (catalogue path)", "type": "string"}', 'to_text', 'BTREE'),
  ('eofusion:label_level1', '{"title": "Level-1 class of the annotation label", "type": "string"}', 'to_text', 'BTREE'),
  ('eofusion:annotated_item', '{"title": "Annotated patch item id", "type": "string"}', 'to_text', NULL);
