"""Writers of raster products."""
