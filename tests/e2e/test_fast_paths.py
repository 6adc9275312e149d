"""Speed paths that must not change results: unpadded text encoding, the text-only tower,
ANN index choice and its measured recall, metadata lookup by row offset."""

from __future__ import annotations

import numpy as np
import pytest
from pixfind.search.cold.texttower import PlainTextTower
from pixfind.search.encoder import (
    TextEncoder,
    _load_cached,
    _load_text_cached,
    load_encoder,
    load_text_encoder,
    save_model_dir,
)
from pixfind.search.index import INDEX_DIR, IndexInfos, VectorIndex
from pixfind.search.indexplan import build_faiss, choose_index
from pixfind.search.models import get_open_clip, register_config
from pixfind.search.recall import exact_topk, neighbour_recall
from pixfind.search.store import Store, path_id
from pixfind.search.types import EncoderSpec, ImageRecord, ModelInfo

from ..conftest import json_out

TINY = EncoderSpec("pixfind-tiny", None)
TEXTS = ["a dog", "two blue squares on a white background, seen from far above", "x", ""]


def _padded(model, tokenizer, texts):
    import torch

    with torch.inference_mode():
        return model.encode_text(tokenizer(texts)).numpy()


def test_unpadded_text_encoding_equals_open_clip_encode_text():
    import torch

    encoder = load_encoder(TINY, "cpu")
    tower = encoder.text_tower()  # the loaded model's own tensors, run by the plain tower
    assert isinstance(tower, PlainTextTower)
    assert tower.state["token_embedding.weight"].data_ptr() == (
        encoder.model.token_embedding.weight.data_ptr()  # shared, not copied
    )
    tokens = encoder.tokenizer(TEXTS)
    assert int(tokens.argmax(-1).max()) + 1 < tokens.shape[1]  # there is padding to skip
    with torch.inference_mode():
        ours = tower.forward(tokens).numpy()
    np.testing.assert_allclose(ours, _padded(encoder.model, encoder.tokenizer, TEXTS), atol=2e-5)
    # and through the public, normalised path, one text at a time as queries are encoded
    one = np.concatenate([encoder.encode_texts([t]) for t in TEXTS])
    ref = _padded(encoder.model, encoder.tokenizer, TEXTS)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    np.testing.assert_allclose(one, ref, atol=2e-5)
    np.testing.assert_allclose(encoder.encode_texts(TEXTS, batch_size=3), ref, atol=2e-5)
    assert encoder.dim == ref.shape[1]


def test_text_only_tower_from_weights_equals_full_model(tmp_path):
    import torch

    full = load_encoder(TINY, "cpu")
    model_dir = save_model_dir(
        full.model, tmp_path / "m", get_open_clip().get_model_config("pixfind-tiny")
    )
    spec = EncoderSpec(str(model_dir), None)
    _load_text_cached.cache_clear()
    text = load_text_encoder(spec, "cpu")
    assert isinstance(text, TextEncoder) and isinstance(text.tower, PlainTextTower)
    assert not any(k.startswith("visual.") for k in text.tower.state)  # no image tower read
    n_text = sum(t.numel() for t in text.tower.state.values())
    assert n_text < sum(p.numel() for p in full.model.parameters())
    expected = _padded(full.model, full.tokenizer, TEXTS)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(text.encode_texts(TEXTS), expected, atol=2e-5)
    assert text.dim == full.dim
    with torch.inference_mode():  # weights were read from the file, not re-initialised
        ref = full.model.token_embedding.weight
        assert torch.equal(text.tower.state["token_embedding.weight"], ref)


def test_text_encoder_falls_back_to_the_full_model_where_the_tower_is_not_exact(tmp_path):
    _load_text_cached.cache_clear()
    assert load_text_encoder(TINY, "cpu") is load_encoder(TINY, "cpu")  # random weights
    # a text tower the plain tower does not reproduce (layer scale): open_clip's encode_text
    cfg = get_open_clip().get_model_config("pixfind-tiny")
    cfg["text_cfg"] = {**cfg["text_cfg"], "ls_init_value": 0.5}
    register_config("pixfind-test-ls", cfg)
    model = get_open_clip().create_model("pixfind-test-ls", pretrained=None).eval()
    model_dir = save_model_dir(model, tmp_path / "ls", cfg)
    spec = EncoderSpec(str(model_dir), None)
    text = load_text_encoder(spec, "cpu")
    assert not isinstance(text, TextEncoder) and text.text_tower() is None
    expected = _padded(model, text.tokenizer, TEXTS)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(text.encode_texts(TEXTS), expected, atol=2e-5)
    _load_cached.cache_clear()
    _load_text_cached.cache_clear()


def test_text_query_never_loads_the_image_tower(cli, picture_dir, tmp_path):
    from pixfind.search.engine import Searcher

    full = load_encoder(TINY, "cpu")
    model_dir = save_model_dir(
        full.model, tmp_path / "m", get_open_clip().get_model_config("pixfind-tiny")
    )
    cli("index", picture_dir, "--model", model_dir)
    _load_cached.cache_clear()
    _load_text_cached.cache_clear()
    searcher = Searcher(tmp_path / "index", cold=False)  # the warm path, in a process that stays
    hits = searcher.search("a red circle", k=3)
    assert len(hits) == 3
    assert searcher._encoder is None and isinstance(searcher._text_encoder, TextEncoder)
    assert _load_cached.cache_info().currsize == 0  # no full model in this process
    # same ranking as the full model's vectors
    vec = full.encode_texts(["a red circle"])[0]
    assert [h.id for h in searcher.search_vector(vec, 3)] == [h.id for h in hits]


# -- ANN --------------------------------------------------------------------------------------
def clustered(n: int, dim: int, clusters: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + 0.7 * rng.standard_normal((n, dim))
    x = x.astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_index_choice_by_size_and_budget():
    assert choose_index(10_000, 512, 4096, 50_000).kind == "flat"
    big = choose_index(1_000_000, 512, 4096, 50_000, kind="ivfpq")
    assert big.kind == "ivfpq" and "SQfp16" in big.factory and big.nlist == 1024
    assert big.estimated_bytes / 1_000_000 <= 1200  # <= 1.2 KB per 512-d vector
    tight = choose_index(1_000_000, 512, 700, 50_000, kind="ivfpq")  # 8-bit copies
    assert "SQ8" in tight.factory and tight.estimated_bytes <= 700 * 2**20
    tiny = choose_index(1_000_000, 512, 100, 50_000, kind="ivfpq")  # PQ codes only
    assert "Refine" not in tiny.factory
    # from big_rows on, or when the float32 vectors exceed the budget: the index on disk
    disk = choose_index(1_000_000, 512, 4096, 50_000)
    assert disk.kind == "ivfpq-disk" and disk.estimated_bytes / 1_000_000 <= 80
    assert choose_index(200_000, 512, 300, 50_000).kind == "ivfpq-disk"  # 400 MB > 300 MB
    assert choose_index(200_000, 512, 4096, 50_000).kind == "ivfpq"
    assert choose_index(200_000, 512, 4096, 50_000, big_rows=100_000).kind == "ivfpq-disk"
    # above the threshold an ANN index even when exact would fit the budget
    assert choose_index(20_000, 512, 4096, 10_000).kind == "ivfpq"
    assert choose_index(500, 512, 4096, 10).kind == "flat"
    with pytest.raises(ValueError, match="unknown index kind"):
        choose_index(10, 4, kind="lsh")


@pytest.mark.parametrize("kind", ["ivfpq", "hnsw"])
def test_ann_recall_against_exact_on_clustered_data(kind):
    x = clustered(12_000, 64, 60)
    plan = choose_index(len(x), 64, 4096, 1000, kind=kind)
    assert plan.kind == kind
    index, params, recall, nq = build_faiss(x, plan, target_recall=0.95)
    assert params and nq > 0 and recall >= 0.95
    # held-out queries (not the tuning ones) agree with the recorded figure
    rng = np.random.default_rng(7)
    q = x[rng.integers(0, len(x), 100)] + 0.05 * rng.standard_normal((100, 64))
    q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    _, found = index.search(q, 10)
    assert neighbour_recall(found, exact_topk(x, q, 10)) >= 0.9


INFO = ModelInfo("test-model", None, "test-model:random", 64, 64, (0.5,) * 3, (0.5,) * 3)


def _store(tmp_path, n: int) -> tuple[Store, np.ndarray]:
    store = Store.create(tmp_path, INFO)
    vecs = clustered(n, 64, 40, seed=3)
    recs = [
        ImageRecord(path_id(f"/p/{i}.jpg"), f"/p/{i}.jpg", 1.0, 10, 4 + i, 3, f"h{i}", 0.0)
        for i in range(n)
    ]
    for start in range(0, n, 2500):
        store.upsert(recs[start : start + 2500], vecs[start : start + 2500])
    return store, vecs


def test_ann_index_built_for_store_records_recall_and_hits_match_metadata(tmp_path, monkeypatch):
    monkeypatch.setenv("PIXFIND_FLAT_MAX_ROWS", "2000")
    store, vecs = _store(tmp_path, 6000)
    index = VectorIndex.for_store(store)
    infos = IndexInfos.read(tmp_path / INDEX_DIR / "infos.json")
    assert infos.index_type.startswith("IVF") and infos.recall_queries > 0
    assert 0.95 <= infos.recall_at_10 <= 1.0 and infos.params["nprobe"] >= 1
    assert 0 < infos.bytes_per_vector < 64 * 4  # smaller than the float32 vectors
    loaded = VectorIndex.load(tmp_path / INDEX_DIR)  # search knobs survive a reload
    assert loaded.infos.params == index.infos.params

    from pixfind.search.engine import Searcher

    store.delete_paths(["/p/3.jpg"])  # offsets shift past a deleted row; a rebuild follows
    searcher = Searcher(tmp_path)

    def no_filter_scan(ids):
        raise AssertionError("metadata should come by row offset, not an id IN (...) scan")

    monkeypatch.setattr(searcher.store, "records", no_filter_scan)
    hits = searcher.search_vector(vecs[17], 5)
    assert hits[0].path == "/p/17.jpg" and hits[0].width == 4 + 17
    for h in hits:  # metadata fetched by row offset belongs to the hit's id
        i = int(h.path.split("/")[-1].split(".")[0])
        assert h.id == path_id(h.path) and h.width == 4 + i


def test_status_shows_measured_recall(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("PIXFIND_FLAT_MAX_ROWS", "2000")
    store, _ = _store(tmp_path / "index", 3000)
    VectorIndex.for_store(store)
    status = json_out(cli("status", "--json"))
    recall = status["faiss"]["recall_at_10"]
    assert status["faiss"]["type"].startswith("IVF") and 0.95 <= recall < 1.0 + 1e-9
    assert f"recall@10 {recall:.3f}" in cli("status").stdout
