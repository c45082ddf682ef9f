"""Readers of Sentinel-1/2 scenes and patch archives."""
