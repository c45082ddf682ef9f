"""Social-media modalities: text embeddings of posts (the other modalities live in SQL)."""
