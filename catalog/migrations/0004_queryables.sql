-- EOFusion's item properties as pgstac queryables: typed in /queryables (so CQL2 compares numbers as
-- numbers) and indexed (BTREE) so metadata filters (grid level, kind, scene) use an index.
INSERT INTO pgstac.queryables (name, definition, property_wrapper, property_index_type) VALUES
  ('eofusion:kind', '{"title": "Item kind", "type": "string", "enum": ["scene", "patch", "annotation"]}',
   'to_text', 'BTREE'),
  ('eofusion:grid_level', '{"title": "Grid level (patch size in pixels)", "type": "integer"}', 'to_int', 'BTREE'),
  ('eofusion:scene', '{"title": "Scene the patch was cut from", "type": "string"}', 'to_text', 'BTREE'),
  ('eofusion:parent', '{"title": "Parent cell on the next coarser grid", "type": "string"}', 'to_text', NULL),
  ('eofusion:sensors', '{"title": "Sensors present", "type": "string", "enum": ["s1", "s2", "s1+s2"]}',
   'to_text', NULL),
  ('eofusion:ground_truth', '{"title": "Ground-truth labels (catalogue paths)", "type": "array", '
   '"items": {"type": "string"}}', 'to_text_array', NULL),
  ('platform', '{"title": "Platform", "type": "string"}', 'to_text', NULL);
