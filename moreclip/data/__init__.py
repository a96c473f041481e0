"""Data: the manifest, readers for the real formats, the synthetic cohort, ingest adapters, cache, Dataset."""
