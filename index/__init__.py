"""Forget store, embedder, vector index and matcher (no HTTP, no layers)."""
