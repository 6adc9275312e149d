"""Training, evaluation, demo data, contact sheets and the end-to-end demo.

Uses pixfind.search and pixfind.indexer; nothing in pixfind.search imports from here."""
