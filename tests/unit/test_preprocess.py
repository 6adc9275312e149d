"""search/preprocess.py: open_clip's inference transform in Pillow and numpy gives the very
tensor torch's gives (bit for bit), for each kind of transform pixfind runs by default, on
real photos and on odd sizes and modes, so an ONNX model folder indexes without torch and
finds what the torch install finds."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from pixfind.search.images import decode_bytes
from pixfind.search.preprocess import ImagePreprocess

from tests.conftest import shared_photos
from tests.unit.test_preprocess_parity import TRANSFORMS, make_transform

IDS = [t[0] for t in TRANSFORMS]


def both(transform, img: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """(torch's tensor as numpy, ours) for one image."""
    _, size, (mean, std), interpolation, resize_mode = transform
    ref = make_transform(size, (mean, std), interpolation, resize_mode)(img).numpy()
    ours = ImagePreprocess.from_config(
        {
            "size": size,
            "mean": mean,
            "std": std,
            "interpolation": interpolation,
            "resize_mode": resize_mode,
        }
    )(img)
    return ref, ours


def assert_identical(ref: np.ndarray, ours: np.ndarray, what: str) -> None:
    assert ours.dtype == np.float32 and ours.shape == ref.shape, what
    differ = int(np.count_nonzero(ours.view(np.uint32) != ref.view(np.uint32)))
    assert differ == 0, f"{what}: {differ} values differ, max {np.abs(ours - ref).max()}"


@pytest.mark.parametrize("transform", TRANSFORMS, ids=IDS)
def test_real_photos_bit_identical(transform):
    for path in shared_photos(12) + shared_photos(4, "cifar10"):
        # as the indexer gives them: decoded (JPEG draft, EXIF upright, RGB) by pixfind
        img = decode_bytes(path.read_bytes(), draft_size=transform[1]).image
        assert_identical(*both(transform, img), f"{path.name} ({transform[0]})")


def odd_images() -> list[tuple[str, Image.Image]]:
    """Sizes that round, crop, pad or stay as they are; every mode Pillow opens into."""
    rng = np.random.default_rng(7)
    rgb = Image.fromarray(rng.integers(0, 256, (301, 457, 3), dtype=np.uint8), "RGB")
    out = [(f"rgb-{w}x{h}", rgb.resize((w, h))) for w, h in [
        (1, 1), (3, 700), (700, 3), (224, 224), (256, 256), (225, 223), (640, 427),
        (427, 640), (97, 51), (2000, 17), (255, 257), (4000, 3000),
    ]]  # fmt: skip
    for mode in ("L", "RGBA", "LA", "P", "CMYK", "I", "F", "1", "YCbCr", "I;16"):
        try:
            converted = rgb.convert(mode)
        except ValueError:
            converted = Image.fromarray(rng.integers(0, 65535, (301, 457), dtype=np.uint16), "I;16")
        out.append((f"mode-{mode}", converted))
    png = io.BytesIO()
    rgb.convert("P").save(png, "PNG", transparency=0)
    out.append(("png-palette-transparency", Image.open(io.BytesIO(png.getvalue()))))
    return out


@pytest.mark.parametrize("transform", TRANSFORMS, ids=IDS)
def test_odd_sizes_and_modes_bit_identical(transform):
    for name, img in odd_images():
        try:
            ref, ours = both(transform, img)
        except Exception as exc:  # noqa: BLE001 - torch refuses it: ours must too
            with pytest.raises(type(exc)):
                ImagePreprocess.from_config({"size": transform[1]})(img)
            continue
        assert_identical(ref, ours, f"{name} ({transform[0]})")


def test_config_round_trip_and_refusals():
    pre = ImagePreprocess.from_config({"size": [192, 256], "mean": 0.5, "std": [0.25]})
    assert pre.size == (192, 256) and pre.mean == (0.5,) * 3 and pre.std == (0.25,) * 3
    assert ImagePreprocess.from_config(pre.to_config()) == pre
    with pytest.raises(ValueError, match="resize mode"):
        ImagePreprocess.from_config({"resize_mode": "stretch"})
