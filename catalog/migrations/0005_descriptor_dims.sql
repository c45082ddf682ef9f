-- Descriptor dimensions are now fixed (eofusion.pipeline.scene.DESCRIPTOR_DIMS): type the columns
-- and index them with HNSW so nearest-neighbour search does not scan. A vector of another
-- dimension is refused at insert time rather than silently stored unsearchable.
ALTER TABLE eofusion.descriptors
    ALTER COLUMN s2 TYPE vector(96),
    ALTER COLUMN s1 TYPE vector(64),
    ALTER COLUMN fused TYPE vector(160);
CREATE INDEX descriptors_s2_hnsw ON eofusion.descriptors USING hnsw (s2 vector_l2_ops) WITH (m = 16, ef_construction = 64);
CREATE INDEX descriptors_s1_hnsw ON eofusion.descriptors USING hnsw (s1 vector_l2_ops) WITH (m = 16, ef_construction = 64);
CREATE INDEX descriptors_fused_hnsw ON eofusion.descriptors USING hnsw (fused vector_l2_ops) WITH (m = 16, ef_construction = 64);
