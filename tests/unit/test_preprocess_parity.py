"""Issue 14: pixfind gives the model the tensor open_clip's reference preprocessing would,
``preprocess(ImageOps.exif_transpose(Image.open(p)).convert("RGB"))``, for each kind of
model transform pixfind supports. Pictures decoded at full size must be bit-exact; JPEGs
decoded at reduced DCT scale ("draft") must stay >= 45 dB PSNR.

The reference is computed here from Pillow alone, never through pixfind's decode code. Two
documented departures are part of the reference: transparent pixels are matted on white, and
16-bit greyscale is divided by 257 (Pillow's convert would clip it to white).
"""

from __future__ import annotations

import io
import math
import random

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps
from pixfind.search.images import decode_bytes, draft_scale

from tests.conftest import SHARED_PHOTOS

MIN_REDUCED_PSNR = 45.0
OPENAI = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
ZERO_ONE = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
# (name, size, (mean, std), interpolation, resize_mode): the transforms of the architectures
# pixfind runs by default (open_clip's ViT/RN CLIPs, MobileCLIP, SigLIP, pixfind-tiny/demo).
TRANSFORMS = [
    ("clip-224-bicubic", 224, OPENAI, "bicubic", "shortest"),
    ("clip-256-bicubic", 256, OPENAI, "bicubic", "shortest"),
    ("mobileclip-256-bilinear", 256, ZERO_ONE, "bilinear", "shortest"),
    ("siglip-224-squash", 224, HALF, "bicubic", "squash"),
    ("siglip-256-squash-bilinear", 256, HALF, "bilinear", "squash"),
    ("clip-224-longest-bilinear", 224, OPENAI, "bilinear", "longest"),
]
REAL_SAMPLE = 40


def make_transform(size, mean_std, interpolation, resize_mode):
    from open_clip.transform import PreprocessCfg, image_transform_v2

    mean, std = mean_std
    cfg = PreprocessCfg(
        size=size, mean=mean, std=std, interpolation=interpolation, resize_mode=resize_mode
    )
    return image_transform_v2(cfg, is_train=False)


# -- the reference: Pillow only ------------------------------------------------------------------
def reference_rgb(data: bytes) -> Image.Image:
    img = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    if img.mode.startswith("I;16") or img.mode == "I":
        grey = np.asarray(img, dtype=np.float64)
        return Image.fromarray(np.round(np.clip(grey, 0, 65535) / 257).astype(np.uint8)).convert(
            "RGB"
        )
    if "transparency" in img.info or img.mode in ("RGBA", "LA", "PA"):
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, img.convert("RGBA")).convert("RGB")
    return img.convert("RGB")


def psnr(a, b) -> float:
    """PSNR over 0..255 pixel levels of two tensors normalised with the same mean/std."""
    mse = float(((a - b) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def levels(tensor, mean_std):
    import torch

    mean, std = (torch.tensor(v).view(3, 1, 1) for v in mean_std)
    return (tensor * std + mean) * 255


# -- the pictures ---------------------------------------------------------------------------------
def _encode(img: Image.Image, fmt: str = "JPEG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def detail_canvas(size=(4624, 3468)) -> Image.Image:
    """A 64-tile mosaic (8x8) of native-resolution detail: crops of real photos at their own
    pixel size when ../shared/photos is present, else noise, stripes and shapes."""
    w, h = size
    tw, th = -(-w // 8), -(-h // 8)
    canvas = Image.new("RGB", size)
    photos = sorted((SHARED_PHOTOS / "images" / "flickr8k").glob("*.jpg"))[:64]
    rng = np.random.default_rng(14)
    for i in range(64):
        x, y = (i % 8) * tw, (i // 8) * th
        if len(photos) == 64:
            tile = ImageOps.fit(Image.open(photos[i]).convert("RGB"), (tw, th))
        else:
            base = rng.integers(0, 256, 3)
            noise = rng.normal(0, 40, (th, tw, 3)) + base
            stripes = 60 * np.sin(np.arange(tw) * rng.uniform(0.2, 3.0))[None, :, None]
            tile = Image.fromarray(np.clip(noise + stripes, 0, 255).astype(np.uint8))
            ImageDraw.Draw(tile).ellipse((tw // 4, th // 4, tw // 2, th // 2), fill=(250, 20, 20))
        canvas.paste(tile, (x, y))
    return canvas


def generated_pictures() -> list[tuple[str, bytes]]:
    canvas = detail_canvas()
    rng = random.Random(14)
    pics: list[tuple[str, bytes]] = [("mosaic-4624x3468", _encode(canvas, quality=92))]

    def crop(w, h):
        if w > canvas.width or h > canvas.height:
            return canvas.resize((w, h), Image.Resampling.LANCZOS)
        x, y = rng.randrange(canvas.width - w + 1), rng.randrange(canvas.height - h + 1)
        return canvas.crop((x, y, x + w, y + h))

    for w, h in [(4000, 3000), (4001, 3001), (4080, 3060)]:
        pics.append((f"phone-{w}x{h}", _encode(crop(w, h), quality=90)))
    for _ in range(3):  # 2000-4000 crops of any size and orientation
        w, h = rng.sample([rng.randrange(2000, 4001), rng.randrange(2000, 3001)], 2)
        pics.append((f"crop-{w}x{h}", _encode(crop(w, h), quality=88)))
    for w, h in [(900, 675), (1793, 1001), (3600, 900), (4600, 767)]:  # near 2x/4x, panoramas
        pics.append((f"jpeg-{w}x{h}", _encode(crop(w, h), quality=90)))
    for w, h in [(600, 450), (895, 672)]:  # drafted before issue 14: now full size
        pics.append((f"small-{w}x{h}", _encode(crop(w, h), quality=90)))
    rotated = crop(1801, 1001)
    for orientation in range(2, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        pics.append((f"exif{orientation}-1801x1001", _encode(rotated, exif=exif, quality=90)))
    big = crop(2001, 1201)
    pics.append(("grey-jpeg-2001x1201", _encode(big.convert("L"), quality=90)))
    pics.append(("cmyk-jpeg-2001x1201", _encode(big.convert("CMYK"), quality=90)))
    pics.append(("progressive-2001x1201", _encode(big, quality=90, progressive=True)))
    pics.append(("subsampling444-2001x1201", _encode(big, quality=95, subsampling=0)))

    small = crop(400, 300)
    alpha = Image.fromarray(((np.indices((300, 400)).sum(0) // 37) % 2 * 255).astype(np.uint8))
    rgba = small.copy()
    rgba.putalpha(alpha)
    grey16 = Image.fromarray((np.asarray(small.convert("L"), np.uint16) * 200 + 17).astype("<u2"))
    pal = small.convert("P", palette=Image.Palette.ADAPTIVE)
    la = small.convert("L")
    la.putalpha(alpha)
    modes = [
        ("mode-1-png", small.convert("1"), "PNG"),
        ("mode-L-png", small.convert("L"), "PNG"),
        ("mode-LA-png", la, "PNG"),
        ("mode-P-png", pal, "PNG"),
        ("mode-P-transparency-gif", pal, "GIF"),
        ("mode-RGBA-png", rgba, "PNG"),
        ("mode-RGB-webp", small, "WEBP"),
        ("mode-RGB-bmp", small, "BMP"),
        ("mode-CMYK-tiff", small.convert("CMYK"), "TIFF"),
        ("mode-LAB-tiff", small.convert("LAB"), "TIFF"),
        ("mode-YCbCr-tiff", small.convert("YCbCr"), "TIFF"),
        ("mode-I;16-png", grey16, "PNG"),
        ("mode-I;16-tiff", grey16, "TIFF"),
        ("mode-I-tiff", grey16.convert("I"), "TIFF"),
    ]
    for name, img, fmt in modes:
        kw = {"transparency": 0} if "transparency" in name else {}
        pics.append((name, _encode(img, fmt, **kw)))
    return pics


def real_pictures(n: int = REAL_SAMPLE) -> list[tuple[str, bytes]]:
    """A fixed sample of real photos (the largest ones of each dataset come first)."""
    root = SHARED_PHOTOS / "images"
    paths = []
    for dataset in ("flickr8k", "coco", "imagenet"):
        files = sorted((root / dataset).glob("*.jpg"))[:300]
        files.sort(key=lambda p: -p.stat().st_size)
        paths += files[: n // 3 + 1]
    return [(f"real-{p.parent.name}/{p.name}", p.read_bytes()) for p in paths[:n]]


def compare(pictures, transforms=TRANSFORMS):
    """(name, transform, decoded at full size?, PSNR) of every picture under every transform."""
    rows = []
    built = [(t[0], t[1], t[2], make_transform(*t[1:])) for t in transforms]
    for name, data in pictures:
        ref_rgb = reference_rgb(data)
        decoded: dict[int, object] = {}
        for tname, size, mean_std, preprocess in built:
            if size not in decoded:
                decoded[size] = decode_bytes(data, draft_size=size)
            d = decoded[size]
            full = d.image.size == (d.width, d.height)
            ours, ref = preprocess(d.image), preprocess(ref_rgb)
            value = psnr(levels(ours, mean_std), levels(ref, mean_std))
            rows.append((name, tname, full, value))
    return rows


def check(rows):
    bad = [
        f"{name} [{tname}]: {'full-size decode not bit-exact' if full else 'reduced'} "
        f"{value:.1f} dB"
        for name, tname, full, value in rows
        if (full and value != math.inf) or (not full and value < MIN_REDUCED_PSNR)
    ]
    assert not bad, "pixfind's tensor differs from the reference:\n" + "\n".join(bad)


# -- the tests ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pictures():
    return generated_pictures()


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tensors: torch's thread pool only costs time here (on a shared machine, a lot)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_generated_pictures_match_the_reference(pictures):
    rows = compare(pictures)
    reduced = [r for r in rows if not r[2]]
    assert len(reduced) >= 20 * len(TRANSFORMS) // 2, "too few reduced decodes to test"
    check(rows)


def test_real_photos_match_the_reference():
    if not (SHARED_PHOTOS / "images").is_dir():
        pytest.skip(f"../shared/photos not present ({SHARED_PHOTOS}); real-photo parity skipped")
    check(compare(real_pictures()))


@pytest.mark.parametrize(
    ("size", "model", "scale"),
    [
        ((4000, 3000), 224, 4),  # 750 >= 448
        ((4000, 1800), 256, 2),  # 450 < 2 * 2 * 256
        ((896, 672), 224, 1),
        ((1792, 1792), 224, 4),
        ((8000, 6000), 224, 8),
        ((4000, 3000), None, 1),
        ((1000, 800), 64, 1),  # small models: never below DRAFT_MIN_SIDE
        ((4000, 3000), 64, 4),
    ],
)
def test_jpegs_are_drafted_only_down_to_twice_the_model_size(size, model, scale):
    assert draft_scale(*size, model) == scale
    if model:
        assert min(size) // scale >= max(2 * model, 448)
