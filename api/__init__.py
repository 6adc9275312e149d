"""HTTP search service (FastAPI)."""
