"""Scene processing pipelines: reading, co-registration, grids and descriptors, window by window."""
