"""open_clip's inference preprocessing in Pillow and numpy: PIL image -> (3, H, W) float32.

The same steps as open_clip's ``image_transform(..., is_train=False)`` (torchvision's
Resize / CenterCrop / ToTensor / Normalize on a PIL image), made of the same Pillow calls, so
the pixels are bit-identical to torch's (tests/unit/test_preprocess.py checks real photos and
odd sizes and modes): an indexing run or an image query on the ONNX runtime never imports
torch or torchvision, and decoding workers never build tensors. The arithmetic is torch's:
uint8 -> float32 divided by 255, minus the mean, divided by the std, each in float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

RESIZE_MODES = ("shortest", "longest", "squash")
_FILTERS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


@dataclass(frozen=True)
class ImagePreprocess:
    """A model's inference transform; picklable (decoding workers call it)."""

    size: tuple[int, int]  # (height, width)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize_mode: str = "shortest"
    interpolation: str = "bicubic"
    fill_color: int = 0

    @classmethod
    def from_config(cls, cfg: dict) -> ImagePreprocess:
        """From open_clip's preprocess config (``size``, ``mean``, ``std``, ``resize_mode``,
        ``interpolation``, ``fill_color``), as an export records it."""
        size = cfg.get("size", 224)
        size = tuple(size[-2:]) if isinstance(size, list | tuple) else (size, size)
        if len(size) == 1:
            size = (size[0], size[0])
        mean = _three(cfg.get("mean") or (0.48145466, 0.4578275, 0.40821073))
        std = _three(cfg.get("std") or (0.26862954, 0.26130258, 0.27577711))
        mode = cfg.get("resize_mode") or "shortest"
        if mode not in RESIZE_MODES:
            raise ValueError(f"unknown resize mode {mode!r}")
        return cls(
            (int(size[0]), int(size[1])),
            mean,
            std,
            mode,
            cfg.get("interpolation") or "bicubic",
            int(cfg.get("fill_color") or 0),
        )

    def to_config(self) -> dict:
        return {
            "size": list(self.size),
            "mean": list(self.mean),
            "std": list(self.std),
            "resize_mode": self.resize_mode,
            "interpolation": self.interpolation,
            "fill_color": self.fill_color,
        }

    def __call__(self, img: Image.Image) -> np.ndarray:
        return self.normalize(self.geometry(img).convert("RGB"))

    def geometry(self, img: Image.Image) -> Image.Image:
        """Resize and crop (or pad) as open_clip does, in the image's own mode."""
        height, width = self.size
        resample = _FILTERS.get(self.interpolation, Image.Resampling.BICUBIC)  # "random" too
        if self.resize_mode == "squash":
            return _resize(img, (height, width), resample)
        if self.resize_mode == "longest":
            img = _resize(img, _keep_ratio(img, self.size, 1.0), resample)
            return _crop_or_pad(img, self.size, self.fill_color)
        if height == width:
            img = _resize(img, _shortest(img, height), resample)
        else:  # open_clip's ResizeKeepRatio, always bicubic there
            img = _resize(img, _keep_ratio(img, self.size, 0.0), Image.Resampling.BICUBIC)
        return _crop_or_pad(img, self.size, 0)

    def normalize(self, img: Image.Image) -> np.ndarray:
        """torchvision's ToTensor then Normalize, in float32."""
        pixels = np.asarray(img, np.uint8).transpose(2, 0, 1).astype(np.float32)
        pixels /= np.float32(255)
        mean = np.asarray(self.mean, np.float32)[:, None, None]
        std = np.asarray(self.std, np.float32)[:, None, None]
        pixels -= mean
        pixels /= std
        return pixels


def _three(values) -> tuple[float, ...]:
    values = tuple(float(v) for v in (values if isinstance(values, list | tuple) else [values]))
    return values * 3 if len(values) == 1 else values


def _resize(img: Image.Image, size: tuple[int, int], resample) -> Image.Image:
    """torchvision's resize of a PIL image to (height, width): none when already that size."""
    if (img.height, img.width) == tuple(size):
        return img
    return img.resize((size[1], size[0]), resample)


def _shortest(img: Image.Image, side: int) -> tuple[int, int]:
    """torchvision's output size for ``Resize(side)``: the short side to ``side``."""
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = side, int(side * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    return new_h, new_w


def _keep_ratio(img: Image.Image, target: tuple[int, int], longest: float) -> tuple[int, int]:
    """open_clip's ResizeKeepRatio (without its random parts): (height, width)."""
    h, w = img.height, img.width
    ratio_h, ratio_w = h / target[0], w / target[1]
    ratio = max(ratio_h, ratio_w) * longest + min(ratio_h, ratio_w) * (1.0 - longest)
    return round(h * 1.0 / ratio), round(w * 1.0 / ratio)


def _crop_or_pad(img: Image.Image, size: tuple[int, int], fill: int) -> Image.Image:
    """torchvision's center_crop (open_clip's center_crop_or_pad with ``fill``): pad with
    ``fill`` to at least ``size`` on each side, then crop the centre."""
    crop_h, crop_w = size
    if crop_w > img.width or crop_h > img.height:
        left = (crop_w - img.width) // 2 if crop_w > img.width else 0
        top = (crop_h - img.height) // 2 if crop_h > img.height else 0
        right = (crop_w - img.width + 1) // 2 if crop_w > img.width else 0
        bottom = (crop_h - img.height + 1) // 2 if crop_h > img.height else 0
        img = _pad(img, (left, top, right, bottom), fill)
        if (img.height, img.width) == (crop_h, crop_w):
            return img
    top = int(round((img.height - crop_h) / 2.0))
    left = int(round((img.width - crop_w) / 2.0))
    return img.crop((left, top, left + crop_w, top + crop_h))


def _pad(img: Image.Image, ltrb: tuple[int, int, int, int], fill: int) -> Image.Image:
    """torchvision's constant pad of a PIL image: ImageOps.expand with the fill given per
    band (a palette kept)."""
    from PIL import ImageOps

    bands = len(img.getbands())
    colour = tuple([fill] * bands) if bands > 1 else fill
    if img.mode == "P":
        palette = img.getpalette()
        out = ImageOps.expand(img, border=ltrb, fill=colour)
        out.putpalette(palette)
        return out
    return ImageOps.expand(img, border=ltrb, fill=colour)
