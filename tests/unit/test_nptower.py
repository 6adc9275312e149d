"""The numpy text tower (search/cold/nptower.py) against the torch one it ports
(search/cold/texttower.py, itself checked against open_clip): the same embeddings from the
same safetensors file, for GELU and QuickGELU towers and float16 files."""

from __future__ import annotations

import numpy as np
import pytest
from pixfind.search.cold.nptower import NumpyTextTower
from pixfind.search.cold.texttower import PlainTextTower, make_recipe
from pixfind.search.models import get_open_clip

from tests.unit.test_texttower import TEXTS  # the same edge cases as the torch tower's


def _recipe(tmp_path, quick_gelu: bool, half: bool = False) -> dict:
    import torch
    from safetensors.torch import save_file

    open_clip = get_open_clip()
    cfg = dict(open_clip.get_model_config("pixfind-tiny"), quick_gelu=quick_gelu)
    model = open_clip.create_model("pixfind-tiny", pretrained=None, force_quick_gelu=quick_gelu)
    torch.manual_seed(3)
    state = {}
    for name, p in model.state_dict().items():
        p = p + torch.randn_like(p) * 0.02 if p.is_floating_point() else p
        state[name] = (p.half() if half else p).contiguous()
    path = tmp_path / "model.safetensors"
    save_file(state, str(path))
    return make_recipe(cfg, path, "tiny:test")


@pytest.mark.parametrize("quick_gelu, half", [(False, False), (True, False), (False, True)])
def test_numpy_tower_equals_torch_tower(tmp_path, quick_gelu, half):
    recipe = _recipe(tmp_path, quick_gelu, half)
    ours, torch_tower = NumpyTextTower.load(recipe), PlainTextTower.load(recipe)
    assert ours is not None and torch_tower is not None and ours.dim == torch_tower.dim
    got, want = ours.encode_texts(TEXTS), torch_tower.encode_texts(TEXTS)
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.abs(got - want).max() < 1e-5
    assert (got * want).sum(1).min() >= 0.99999


def test_numpy_tower_refuses_what_it_cannot_run(tmp_path):
    recipe = _recipe(tmp_path, False)
    assert NumpyTextTower.load({**recipe, "weights_size": recipe["weights_size"] + 1}) is None
    assert NumpyTextTower.load({**recipe, "arch": {**recipe["arch"], "layers": 1}}) is None
    bin_file = tmp_path / "model.bin"
    bin_file.write_bytes(b"")
    assert NumpyTextTower.load({**recipe, "weights": str(bin_file)}) is None
    assert NumpyTextTower.load(None) is None
