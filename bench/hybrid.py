"""Hybrid keyword + vector search on a generated corpus with ground truth (issue 16).

Every photo is a demo scene (train/demodata.py: coloured shapes on backgrounds) named
neutrally (``IMG_00042.jpg`` under ``batch03/``). Some photos get one distinguishing fact
that no pixel shows, found by a query that states it:

  (a) name     the file name holds a made-up place word   IMG_0042_zanfora.jpg  "zanfora"
  (b) folder   the folder name does                       Trip Velmora 2019/    "velmora"
  (c) caption  a sidecar caption does                     "Tom's wedding at Quillet"
                                                          -> "wedding quillet"
  (d) text     the word is printed inside the photo: a sign, a receipt, a screenshot
               (bench/text_photos.py), found by OCR (--ocr)          "zanfora"
  (v) visual   "a red circle": the photos whose scene holds one (purely visual)

Distractors make the keyword side honest: other photos carry captions and names with the
visual queries' words ("the red barn", "circle_line_cruise"), so a visual query's keywords do
match photos that are not what it asks for. (d) is measured with ``--ocr`` (Tesseract
installed: apt install tesseract-ocr tesseract-ocr-eng), indexing with OCR.

For each kind and each ranking (vector, keyword, hybrid with each fusion) it prints R@1, R@5
and MRR (of the first relevant photo). With the trained demo model (README "The demo"):

    PYTHONPATH=. python bench/hybrid.py --model DEMO_MODEL_DIR
    PYTHONPATH=. python bench/hybrid.py            # pixfind-tiny, random weights
    PYTHONPATH=. python bench/hybrid.py --model DEMO_MODEL_DIR --ocr   # and (d)

tests/e2e/test_hybrid_bench.py runs ``measure`` and asserts hybrid R@5 >= 0.9 for (a), (b),
(c), >= 0.8 for (d) with OCR, and a visual MRR loss of at most 2% against vector-only.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KINDS = ("name", "folder", "caption", "text", "visual")
EVENTS = ("wedding", "birthday", "graduation", "reunion", "picnic", "concert", "regatta")
PEOPLE = ("Tom", "Anna", "Grandma", "Luis", "Mia", "Kenji", "Priya")
DISTRACTOR_CAPTIONS = (
    "the red barn behind the farm",
    "blue hour on the river",
    "the green line train",
    "a star hotel by the pool",
    "walking the circle line",
    "a triangle of sandwiches",
    "purple rain concert poster",
    "the yellow taxi home",
    "pink lemonade stand",
    "the orange grove in spring",
    "square dance night",
    "diamond anniversary dinner",
)
DISTRACTOR_NAMES = (
    "red_carpet",
    "blue_lagoon",
    "circle_line_cruise",
    "green_park",
    "star_wars_day",
    "brownTrout",
)
DEFAULT = "hybrid linear, coverage^8 (default)"  # what Searcher does unless told otherwise
SETTINGS = (  # (label, mode, fusion, keyword weight, coverage power)
    ("vector", "vector", "linear", 1.0, 4.0),
    ("keyword", "keyword", "linear", 1.0, 4.0),
    ("hybrid linear, no coverage", "hybrid", "linear", 1.0, 0.0),
    ("hybrid linear, coverage^2", "hybrid", "linear", 1.0, 2.0),
    ("hybrid linear, coverage^4", "hybrid", "linear", 1.0, 4.0),
    ("hybrid linear, coverage^8 (default)", "hybrid", "linear", 1.0, 8.0),
    ("hybrid linear w=0.5, coverage^8", "hybrid", "linear", 0.5, 8.0),
    ("hybrid rrf", "hybrid", "rrf", 1.0, 4.0),
)


def made_up_words(n: int, rng: random.Random) -> list[str]:
    """Unique pronounceable words no English text holds (place names to be found by)."""
    onsets, vowels, codas = "bdfgklmnprstvz", "aeiou", ["", "n", "r", "l", "s", "x"]
    words: set[str] = set()
    while len(words) < n:
        parts = [rng.choice(onsets) + rng.choice(vowels) for _ in range(rng.randint(2, 3))]
        words.add("".join(parts) + rng.choice(codas))
    return sorted(sorted(words), key=lambda _: rng.random())  # a set's order varies by run


@dataclass
class Corpus:
    root: Path
    queries: dict[str, list[tuple[str, set[str]]]] = field(default_factory=dict)  # kind -> ...


def make_corpus(
    root: Path,
    n: int = 300,
    per_kind: int = 30,
    seed: int = 0,
    kinds: tuple[str, ...] = ("name", "folder", "caption"),
) -> Corpus:
    """``n`` photos under ``root``; ``per_kind`` of each of ``kinds`` (of name, folder,
    caption, text), the others plain demo scenes for the visual queries."""
    from pixfind.bench.text_photos import render_text_photo
    from pixfind.train.demodata import COLOURS, SHAPES, random_scene, render

    rng = random.Random(seed)
    words = made_up_words(len(kinds) * per_kind, rng)
    corpus = Corpus(root, {k: [] for k in (*kinds, "visual")})
    scenes = {}
    for i in range(n):
        scene = random_scene(random.Random(seed * 100_003 + i))
        kind = kinds[i % len(kinds)] if i < len(kinds) * per_kind else None
        folder, name = root / f"batch{i // 40:02d}", f"IMG_{i:05d}"
        caption, image = None, None
        if kind == "name":
            word = words[i]
            name = f"IMG_{i:04d}_{word}"
            query = word
        elif kind == "folder":
            word = words[i]
            folder = root / f"Trip {word.capitalize()} {2010 + i % 14}"
            query = word
        elif kind == "caption":
            word, event = words[i], EVENTS[i % len(EVENTS)]
            caption = f"{PEOPLE[i % len(PEOPLE)]}'s {event} at {word.capitalize()}"
            query = f"{event} {word}"
        elif kind == "text":  # a sign on the scene, or a receipt or a screenshot
            word = query = words[i]
            background = render(scene, random.Random(i), 256)
            image = render_text_photo(word, random.Random(seed * 7919 + i), background)
        elif i % 7 == 0:  # distractors: the visual queries' words, not their pictures
            caption = DISTRACTOR_CAPTIONS[(i // 7) % len(DISTRACTOR_CAPTIONS)]
        elif i % 11 == 0:
            name = f"{DISTRACTOR_NAMES[(i // 11) % len(DISTRACTOR_NAMES)]}_{i:03d}"
        path = folder / f"{name}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        (image or render(scene, random.Random(i), 128)).save(path, "JPEG", quality=90)
        if caption:
            Path(f"{path}.txt").write_text(caption + "\n")
        if kind:
            corpus.queries[kind].append((query, {str(path)}))
        if image is None:  # a receipt or a screenshot shows no scene
            scenes[str(path)] = scene
    for colour in COLOURS:
        for shape in SHAPES:
            relevant = {p for p, s in scenes.items() if s.has(colour=colour, shape=shape)}
            if relevant:
                corpus.queries["visual"].append((f"a {colour} {shape}", relevant))
    return corpus


def rank_of(paths: list[str], relevant: set[str]) -> int | None:
    return next((i for i, p in enumerate(paths, 1) if p in relevant), None)


def measure(home: Path, corpus: Corpus, settings=SETTINGS, k: int = 20) -> dict:
    """{(label, kind): {"r1", "r5", "mrr", "n"}} over the corpus's queries."""
    from pixfind.search import hybrid
    from pixfind.search.engine import Searcher
    from pixfind.search.query import Query

    searcher = Searcher(home, cold=False)
    out = {}
    default_power = hybrid.COVERAGE_POWER
    for label, mode, fusion, weight, power in settings:
        searcher.fusion, searcher.keyword_weight = fusion, weight
        hybrid.COVERAGE_POWER = power
        for kind, queries in corpus.queries.items():
            if not queries:
                continue
            ranks = []
            for text, relevant in queries:
                hits = searcher.run(Query.text(text, k=k, mode=mode)).hits
                ranks.append(rank_of([h.path for h in hits], relevant))
            out[label, kind] = {
                "r1": float(np.mean([r == 1 for r in ranks])),
                "r5": float(np.mean([r is not None and r <= 5 for r in ranks])),
                "mrr": float(np.mean([1.0 / r if r else 0.0 for r in ranks])),
                "n": len(ranks),
            }
    hybrid.COVERAGE_POWER = default_power
    return out


def latency(home: Path, queries: list[str], repeat: int = 3) -> dict[str, tuple[float, float]]:
    """p50/p99 ms of vector-only and hybrid text queries, same searcher, same run."""
    from pixfind.search.engine import Searcher
    from pixfind.search.query import Query

    searcher = Searcher(home, cold=False)
    out = {}
    for mode in ("vector", "hybrid"):
        searcher.run(Query.text(queries[0], k=10, mode=mode))  # warm up
        times = []
        for _ in range(repeat):
            for q in queries:
                start = time.perf_counter()
                searcher.run(Query.text(q, k=10, mode=mode))
                times.append((time.perf_counter() - start) * 1000)
        out[mode] = (float(np.percentile(times, 50)), float(np.percentile(times, 99)))
    return out


def synthetic_store(home: Path, n: int, encoder, seed: int = 0) -> None:
    """``n`` rows of random vectors of ``encoder``'s width with keyword texts like a real
    library's (folders of places and years, camera names, some captions), and their full-text
    index: for query latency at sizes too large to index here."""
    from pixfind.search import keywords
    from pixfind.search.rows import records_table
    from pixfind.search.store import Store, path_id
    from pixfind.search.types import ImageRecord

    rng = np.random.default_rng(seed)
    places = made_up_words(2000, random.Random(seed))
    store = Store.create(home, encoder.info)
    dim = encoder.info.dim
    for start in range(0, n, 20_000):
        m = min(20_000, n - start)
        recs, texts = [], []
        for i in range(start, start + m):
            place = places[i // 50 % len(places)]
            path = f"/photos/Trip {place.capitalize()} {2000 + i % 25}/IMG_{i:07d}.jpg"
            caps = (f"{EVENTS[i % len(EVENTS)]} at {place}",) if i % 4 == 0 else ()
            recs.append(ImageRecord(path_id(path), path, 1.7e9, 1, 64, 48, f"{i:032x}", 1.7e9))
            texts.append(keywords.keyword_text(path, ["/photos"], caps, "Canon", "EOS R5"))
        x = rng.standard_normal((m, dim)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        store.table.add(records_table(recs, x, store.table.schema, keywords=texts))
    keywords.update_index(store)


def table(results: dict, settings=SETTINGS) -> str:
    kinds = [k for k in KINDS if any(kind == k for _, kind in results)]
    head = f"| ranking | {' | '.join(f'{k} R@1 / R@5 / MRR' for k in kinds)} |"
    lines = [head, "|" + "---|" * (len(kinds) + 1)]
    for label, *_ in settings:
        cells = []
        for kind in kinds:
            m = results[label, kind]
            cells.append(f"{m['r1']:.2f} / {m['r5']:.2f} / {m['mrr']:.3f}")
        lines.append(f"| {label} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pixfind-tiny", help="a model name or directory")
    parser.add_argument("--pretrained", default=None)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--per-kind", type=int, default=30)
    parser.add_argument("--ocr", action="store_true", help="add (d), text inside photos")
    parser.add_argument(
        "--latency-n", type=int, default=0, help="also time queries on this many synthetic rows"
    )
    args = parser.parse_args()

    from pixfind.indexer import IndexOptions, run_index
    from pixfind.search.encoder import load_encoder
    from pixfind.search.types import EncoderSpec

    with tempfile.TemporaryDirectory() as tmp:
        kinds = ("name", "folder", "caption", "text") if args.ocr else ("name", "folder", "caption")
        corpus = make_corpus(Path(tmp) / "photos", args.n, args.per_kind, kinds=kinds)
        encoder = load_encoder(EncoderSpec(args.model, args.pretrained), "cpu")
        started = time.perf_counter()
        options = IndexOptions(roots=[str(corpus.root)], ocr=args.ocr)
        report = run_index(Path(tmp) / "index", options, encoder=encoder)
        print(f"indexed {report.total} photos in {time.perf_counter() - started:.1f}s")
        if args.ocr:
            print(f"OCR: {report.stage_summary().split(', ')[-1]} (read {report.ocr_read})")
        counts = ", ".join(f"{k} {len(q)}" for k, q in corpus.queries.items())
        print(f"model {encoder.info.label}; queries: {counts}\n")
        results = measure(Path(tmp) / "index", corpus)
        print(table(results))
        texts = [q for qs in corpus.queries.values() for q, _ in qs]
        lat = latency(Path(tmp) / "index", texts)
        print_latency(lat, report.total)
        if args.latency_n:
            started = time.perf_counter()
            synthetic_store(Path(tmp) / "big", args.latency_n, encoder)
            print(f"synthetic store built in {time.perf_counter() - started:.0f}s")
            print_latency(latency(Path(tmp) / "big", texts), args.latency_n)


def print_latency(lat: dict, n: int) -> None:
    (v50, v99), (h50, h99) = lat["vector"], lat["hybrid"]
    print(
        f"\nlatency (ms, p50/p99, {n} photos): vector {v50:.1f}/{v99:.1f}, "
        f"hybrid {h50:.1f}/{h99:.1f}"
    )


if __name__ == "__main__":
    main()
