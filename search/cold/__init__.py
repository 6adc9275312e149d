"""The cold text-query path: answers a plain text query without importing open_clip or
LanceDB (a plain-torch text tower and a query snapshot written next to the FAISS index).
Used only by search/engine.py."""
