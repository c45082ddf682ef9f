-- The stored S2 descriptor gains the NIR texture (eofusion.features.s2texture): 96 -> 160 values.
-- Vectors of the old kind cannot be compared with the new ones: they are cleared (re-ingest to fill).
DROP INDEX eofusion.descriptors_s2_hnsw;
UPDATE eofusion.descriptors SET s2 = NULL WHERE s2 IS NOT NULL;
ALTER TABLE eofusion.descriptors ALTER COLUMN s2 TYPE vector(160);
CREATE INDEX descriptors_s2_hnsw ON eofusion.descriptors USING hnsw (s2 vector_l2_ops) WITH (m = 16, ef_construction = 64);
