"""A synthetic captioned photo collection: coloured shapes on varied backgrounds.

Every scene is drawn from a seeded generator, so ``generate(out, n, seed)`` writes the same
JPEG files and captions on every machine. The captions are written from the scene itself
(shape, colour, size, position, count, background) with varied templates, which is what lets
a small dual encoder learn attribute words in minutes and lets tests check search results
against ground truth (``scenes.jsonl``).

Layout written under OUT::

    train/  00000.jpg ... captions.jsonl labels.jsonl scenes.jsonl
    test/   (the held-out split, same files)
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from pixfind.search.errors import PixfindError

IMAGE_SIZE = 128

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 140, 20),
    "yellow": (245, 225, 30),
    "green": (40, 170, 50),
    "blue": (35, 75, 225),
    "purple": (135, 45, 180),
    "pink": (250, 130, 190),
    "brown": (125, 75, 35),
}
# Six well-separated shapes (a hexagon was dropped: at the model's 64 px it is a circle).
SHAPES = ("circle", "square", "triangle", "star", "diamond", "cross")

# A shifted domain for fine-tuning: new colour words and new shapes the demo model never saw.
SHIFTED_COLOURS: dict[str, tuple[int, int, int]] = {
    "cyan": (20, 210, 220),
    "magenta": (225, 20, 200),
    "lime": (160, 240, 40),
    "navy": (20, 25, 110),
    "teal": (0, 120, 120),
    "gold": (200, 160, 20),
    "maroon": (110, 15, 35),
    "olive": (110, 115, 20),
}
SHIFTED_SHAPES = ("heart", "arrow", "crescent", "pentagon", "ring", "oval")
VARIANTS = ("demo", "shifted")

BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (245, 245, 242),
    "black": (18, 18, 20),
    "grey": (128, 128, 128),
}
POSITIONS = ("left", "right", "top", "bottom", "center")
POSITION_PHRASES = {
    "left": ("on the left", "at the left"),
    "right": ("on the right", "at the right"),
    "top": ("at the top", "near the top"),
    "bottom": ("at the bottom", "near the bottom"),
    "center": ("in the center", "in the middle"),
}
# centre of each position as a fraction of the image, and the jitter around it
_ANCHORS = {
    "left": (0.24, 0.5),
    "right": (0.76, 0.5),
    "top": (0.5, 0.24),
    "bottom": (0.5, 0.76),
    "center": (0.5, 0.5),
}
SIZES = {"large": 0.21, "small": 0.15}  # radius as a fraction of the image side
NUMBERS = {2: "two", 3: "three"}
KINDS = ("scenes", "objects")
PREFIXES = ("", "", "a photo of ", "an image of ", "a picture of ", "a drawing of ")


@dataclass(frozen=True)
class Thing:
    shape: str
    colour: str
    size: str
    position: str


@dataclass(frozen=True)
class Scene:
    background: str  # a BACKGROUNDS name
    texture: str  # plain, gradient or noise
    things: tuple[Thing, ...]

    def to_dict(self) -> dict:
        return {
            "background": self.background,
            "texture": self.texture,
            "objects": [asdict(t) for t in self.things],
        }

    @classmethod
    def from_dict(cls, row: dict) -> Scene:
        return cls(row["background"], row["texture"], tuple(Thing(**t) for t in row["objects"]))

    def has(self, **attrs: str) -> bool:
        """True when one object has all the given attributes (shape=..., colour=..., ...)."""
        return any(all(getattr(t, k) == v for k, v in attrs.items()) for t in self.things)


def palette(variant: str) -> tuple[dict[str, tuple[int, int, int]], tuple[str, ...]]:
    if variant == "demo":
        return COLOURS, SHAPES
    if variant == "shifted":
        return SHIFTED_COLOURS, SHIFTED_SHAPES
    raise PixfindError(f"unknown demo-data variant {variant!r}; choose one of {VARIANTS}")


# -- scenes ------------------------------------------------------------------------------------
def random_scene(rng: random.Random, variant: str = "demo") -> Scene:
    colours, shapes = palette(variant)
    n = rng.choices((1, 2, 3), weights=(0.35, 0.4, 0.25))[0]
    positions = rng.sample(POSITIONS, n)
    things: list[Thing] = []
    for i, pos in enumerate(positions):
        if i > 0 and rng.random() < 0.25:  # a repeat: "two blue triangles"
            first = things[0]
            things.append(Thing(first.shape, first.colour, rng.choice(tuple(SIZES)), pos))
            continue
        things.append(
            Thing(rng.choice(shapes), rng.choice(tuple(colours)), rng.choice(tuple(SIZES)), pos)
        )
    return Scene(
        rng.choice(tuple(BACKGROUNDS)),
        rng.choice(("plain", "plain", "gradient", "noise")),
        tuple(things),
    )


def _polygon(shape: str, cx: float, cy: float, r: float, turn: float) -> list[tuple[float, float]]:
    def ring(k: int, radius: float, offset: float) -> list[tuple[float, float]]:
        return [
            (
                cx + radius * math.cos(offset + turn + 2 * math.pi * j / k),
                cy + radius * math.sin(offset + turn + 2 * math.pi * j / k),
            )
            for j in range(k)
        ]

    if shape == "square":
        s = r * 0.85
        return [(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s), (cx - s, cy + s)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + r * 0.75, cy), (cx, cy + r), (cx - r * 0.75, cy)]
    if shape == "triangle":
        return ring(3, r, -math.pi / 2)
    if shape == "pentagon":
        return ring(5, r, -math.pi / 2)
    if shape == "hexagon":
        return ring(6, r, 0.0)
    if shape == "star":
        outer, inner = ring(5, r, -math.pi / 2), ring(5, r * 0.42, -math.pi / 2 + math.pi / 5)
        return [p for pair in zip(outer, inner, strict=True) for p in pair]
    if shape == "cross":
        a, b = r, r * 0.33
        pts = [(-b, -a), (b, -a), (b, -b), (a, -b), (a, b), (b, b)]
        pts += [(b, a), (-b, a), (-b, b), (-a, b), (-a, -b), (-b, -b)]
        return [(cx + x, cy + y) for x, y in pts]
    if shape == "arrow":
        a, b = r, r * 0.3
        pts = [(-a, -b), (0.1 * a, -b), (0.1 * a, -a * 0.7), (a, 0), (0.1 * a, a * 0.7)]
        pts += [(0.1 * a, b), (-a, b)]
        return [(cx + x, cy + y) for x, y in pts]
    if shape == "heart":
        pts = []
        for j in range(40):
            t = 2 * math.pi * j / 40
            x = 16 * math.sin(t) ** 3
            y = -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t))
            pts.append((cx + x * r / 16, cy + y * r / 16))
        return pts
    raise ValueError(shape)


def _jitter(rgb: tuple[int, int, int], rng: random.Random, amount: int) -> tuple[int, int, int]:
    return tuple(max(0, min(255, c + rng.randint(-amount, amount))) for c in rgb)  # type: ignore[return-value]


def render(scene: Scene, rng: random.Random, size: int = IMAGE_SIZE) -> Image.Image:
    """Draw a scene: background (plain, gradient or noisy), the objects, then sensor noise."""
    base = np.array(_jitter(BACKGROUNDS[scene.background], rng, 6), dtype=np.float32)
    canvas = np.broadcast_to(base, (size, size, 3)).copy()
    nprng = np.random.default_rng(rng.getrandbits(32))
    if scene.texture == "gradient":
        ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32)
        ramp = ramp[:, None] if rng.random() < 0.5 else ramp[None, :]
        canvas += (ramp * rng.uniform(12, 28))[..., None]
    elif scene.texture == "noise":
        blobs = nprng.normal(0, 1, (size // 8, size // 8, 1)).astype(np.float32)
        canvas += np.kron(blobs, np.ones((8, 8, 1), np.float32)) * rng.uniform(6, 14)
    img = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    colours = {**COLOURS, **SHIFTED_COLOURS}
    # big objects first, so a small one in front of a big one stays visible
    for thing in sorted(scene.things, key=lambda t: -SIZES[t.size]):
        ax, ay = _ANCHORS[thing.position]
        cx = (ax + rng.uniform(-0.03, 0.03)) * size
        cy = (ay + rng.uniform(-0.03, 0.03)) * size
        r = SIZES[thing.size] * size * rng.uniform(0.9, 1.1)
        fill = _jitter(colours[thing.colour], rng, 14)
        turn = rng.uniform(-0.15, 0.15)
        if thing.shape == "circle":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        elif thing.shape == "ring":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=fill, width=max(2, int(r / 3)))
        elif thing.shape == "oval":
            draw.ellipse((cx - r, cy - r * 0.55, cx + r, cy + r * 0.55), fill=fill)
        elif thing.shape == "crescent":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
            back = tuple(int(v) for v in canvas[int(min(cy, size - 1)), int(min(cx, size - 1))])
            draw.ellipse((cx - r * 0.55, cy - r, cx + r * 1.45, cy + r), fill=back)
        else:
            draw.polygon(_polygon(thing.shape, cx, cy, r, turn), fill=fill)
    arr = np.asarray(img, dtype=np.float32)
    sigma = rng.uniform(0, 10)
    if sigma > 1:
        arr = arr + nprng.normal(0, sigma, arr.shape).astype(np.float32)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


# -- captions ----------------------------------------------------------------------------------
def _plural(shape: str) -> str:
    return shape + ("es" if shape.endswith(("s", "x", "sh", "ch")) else "s")


def _phrase(things: list[Thing], rng: random.Random, with_size: bool, with_pos: bool) -> str:
    """'a large red circle on the left', or 'two blue triangles' for repeats."""
    t = things[0]
    if len(things) > 1:
        words = [NUMBERS[len(things)], t.colour, _plural(t.shape)]
    else:
        article_size = [t.size] if with_size else []
        words = [*article_size, t.colour, t.shape]
        words.insert(0, "an" if words[0][0] in "aeiou" else "a")
    text = " ".join(words)
    if with_pos and len(things) == 1:
        text += " " + rng.choice(POSITION_PHRASES[t.position])
    return text


def _join(parts: list[str], rng: random.Random) -> str:
    if len(parts) == 1:
        return parts[0]
    if rng.random() < 0.15:
        return ", ".join(parts)
    sep = rng.choice((" and ", " and ", " with ", " next to "))
    if len(parts) == 2:
        return parts[0] + sep + parts[1]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def caption(scene: Scene, rng: random.Random) -> str:
    """One caption for a scene, with a randomly chosen amount of detail and word order."""
    groups: dict[tuple[str, str], list[Thing]] = {}
    for t in scene.things:
        groups.setdefault((t.colour, t.shape), []).append(t)
    items = list(groups.values())
    rng.shuffle(items)
    with_size = rng.random() < 0.6
    with_pos = rng.random() < 0.6
    parts = [_phrase(g, rng, with_size, with_pos) for g in items]
    text = _join(parts, rng)
    bg = rng.random()
    if bg < 0.3:
        text += f" on a {scene.background} background"
    elif bg < 0.4:
        text = f"a {scene.background} background with {text}"
    return (rng.choice(PREFIXES) + text).strip()


def captions(scene: Scene, rng: random.Random, n: int) -> list[str]:
    seen: list[str] = []
    for _ in range(n * 4):
        text = caption(scene, rng)
        if text not in seen:
            seen.append(text)
        if len(seen) == n:
            break
    return seen


def object_captions(scene: Scene) -> list[str]:
    """Short captions of a one-object photo, for warm-up training: 'a star', 'a large star',
    'a large red star'. Among such captions only the shape (then the size) tells photos apart,
    so a model trained on them first learns to see shapes; trained on full scenes from the
    start it leans on colour, which alone tells most photos of a batch apart."""
    t = scene.things[0]
    return [
        f"{_article(t.shape)} {t.shape}",
        f"a {t.size} {t.shape}",
        f"a {t.size} {t.colour} {t.shape}",
    ]


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def label(scene: Scene) -> str | None:
    """Zero-shot class of a one-object scene ('red circle'); None for busier scenes."""
    if len(scene.things) != 1:
        return None
    return f"{scene.things[0].colour} {scene.things[0].shape}"


# -- writing -----------------------------------------------------------------------------------
@dataclass
class DemoData:
    root: Path
    train: Path
    test: Path
    n_train: int
    n_test: int


def _scene_rng(seed: int, variant: str, i: int) -> random.Random:
    return random.Random(f"pixfind-demo:{variant}:{seed}:{i}")


def held_out(n: int, n_test: int | None, test_fraction: float = 0.2) -> int:
    """How many of ``n`` photos go to test/: ``n_test``, or by default ``test_fraction`` of them."""
    if n_test is None:
        return max(1, round(n * test_fraction))
    if not 0 < n_test < n:
        raise PixfindError(f"--n-test must be between 1 and {n - 1} (--n is {n})")
    return n_test


def generate(
    out: str | os.PathLike,
    n: int = 1000,
    seed: int = 0,
    test_fraction: float = 0.2,
    variant: str = "demo",
    captions_per_image: int = 4,
    size: int = IMAGE_SIZE,
    on_progress: Callable[[int, int], None] | None = None,
    kind: str = "scenes",
    n_test: int | None = None,
) -> DemoData:
    """Write ``n`` synthetic captioned photos under ``out`` (train/ and test/); deterministic.

    The last ``n_test`` photos (default: ``test_fraction`` of ``n``) are held out in test/;
    photo i is the same whatever ``n`` and the split, so a larger ``n`` only adds photos.

    ``kind``: "scenes" (one to three objects, varied captions) or "objects" (one object per
    photo with the short captions of object_captions: warm-up data for training)."""
    palette(variant)
    if kind not in KINDS:
        raise PixfindError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if n < 2:
        raise PixfindError("demo-data needs --n of at least 2 (one train and one test image)")
    if not 0 < test_fraction < 1:
        raise PixfindError("--test-fraction must be between 0 and 1")
    n_test = held_out(n, n_test, test_fraction)
    root = Path(out).expanduser().resolve()
    n_train = n - n_test
    splits = {"train": root / "train", "test": root / "test"}
    files: dict[str, dict[str, list[str]]] = {s: {"cap": [], "lab": [], "scn": []} for s in splits}
    for folder in splits.values():
        folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        split = "train" if i < n_train else "test"
        rng = _scene_rng(seed, variant if kind == "scenes" else f"{variant}:{kind}", i)
        scene = random_scene(rng, variant)
        while kind == "objects" and len(scene.things) != 1:
            scene = random_scene(rng, variant)
        name = (
            f"{variant}-{seed}-{i:05d}.jpg"
            if kind == "scenes"
            else f"{variant}-{kind}-{seed}-{i:05d}.jpg"
        )
        render(scene, rng, size).save(splits[split] / name, "JPEG", quality=90)
        rows = files[split]
        texts = (
            captions(scene, rng, captions_per_image) if kind == "scenes" else object_captions(scene)
        )
        for text in texts:
            rows["cap"].append(json.dumps({"image": name, "caption": text}))
        if (lab := label(scene)) is not None:
            rows["lab"].append(json.dumps({"image": name, "label": lab}))
        rows["scn"].append(json.dumps({"image": name, **scene.to_dict()}))
        if on_progress:
            on_progress(i + 1, n)
    for split, folder in splits.items():
        for key, fname in (
            ("cap", "captions.jsonl"),
            ("lab", "labels.jsonl"),
            ("scn", "scenes.jsonl"),
        ):
            (folder / fname).write_text("\n".join(files[split][key]) + "\n", encoding="utf-8")
    return DemoData(root, splits["train"], splits["test"], n_train, n_test)


def read_scenes(folder: str | os.PathLike) -> dict[str, Scene]:
    """Absolute image path -> Scene, from a split folder's scenes.jsonl."""
    folder = Path(folder).expanduser().resolve()
    path = folder / "scenes.jsonl"
    if not path.is_file():
        raise PixfindError(f"no scenes.jsonl in {folder} (write one with `pixfind demo-data`)")
    scenes = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            scenes[str(folder / row["image"])] = Scene.from_dict(row)
    return scenes


# -- ground truth for queries ------------------------------------------------------------------
@dataclass(frozen=True)
class AttrQuery:
    """A natural-language query and what a matching scene must contain."""

    text: str
    colour: str
    shape: str
    size: str | None = None
    position: str | None = None
    count: int = 1
    background: str | None = None

    def matches(self, scene: Scene) -> bool:
        attrs = {"colour": self.colour, "shape": self.shape}
        if self.size:
            attrs["size"] = self.size
        if self.position:
            attrs["position"] = self.position
        found = sum(all(getattr(t, k) == v for k, v in attrs.items()) for t in scene.things)
        if self.background and scene.background != self.background:
            return False
        return found >= self.count


DEMO_QUERIES = (
    AttrQuery("a red circle", "red", "circle"),
    AttrQuery("a large blue square on the left", "blue", "square", "large", "left"),
    AttrQuery("a yellow star at the top", "yellow", "star", position="top"),
    AttrQuery("two green triangles", "green", "triangle", count=2),
    AttrQuery("a small purple star", "purple", "star", "small"),
    AttrQuery("a pink diamond on a black background", "pink", "diamond", background="black"),
    AttrQuery("an orange cross in the middle", "orange", "cross", position="center"),
    AttrQuery("a brown circle on the right", "brown", "circle", position="right"),
)
