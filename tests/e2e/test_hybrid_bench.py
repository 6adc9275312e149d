"""bench/hybrid.py's corpus with the demo model trained in this session (issue 16): photos
found only by a word in their file name, folder name or caption, and purely visual queries
("a red circle"), with distractors whose captions and names hold the visual queries' words.

Hybrid must find the first three (R@5 >= 0.9 each) and cost visual queries at most 2% MRR
against vector-only search."""

from __future__ import annotations

from pixfind.bench.hybrid import DEFAULT, SETTINGS, make_corpus, measure, table
from pixfind.indexer import IndexOptions, run_index
from pixfind.search.encoder import load_encoder
from pixfind.search.types import EncoderSpec


def test_hybrid_finds_names_folders_captions_and_keeps_visual_queries(demo_model, tmp_path):
    corpus = make_corpus(tmp_path / "photos", n=240, per_kind=25)
    encoder = load_encoder(EncoderSpec(str(demo_model), None), "cpu")
    run_index(tmp_path / "index", IndexOptions(roots=[str(corpus.root)]), encoder=encoder)
    settings = [s for s in SETTINGS if s[0] in ("vector", "keyword", DEFAULT)]
    results = measure(tmp_path / "index", corpus, settings)
    print("\n" + table(results, settings))
    hybrid = DEFAULT
    for kind in ("name", "folder", "caption"):
        assert results[hybrid, kind]["r5"] >= 0.9, kind
    assert results["vector", "visual"]["mrr"] > 0.3  # the demo model does see colours/shapes
    assert results[hybrid, "visual"]["mrr"] >= 0.98 * results["vector", "visual"]["mrr"]
