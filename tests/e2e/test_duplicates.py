"""`pixfind duplicates` end to end: real photos with planted copies, indexed for real."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from ..conftest import TINY, json_out, make_picture, shared_photos

MODEL = ["--model", TINY[0], "--pretrained", TINY[1]]
KINDS = ("resize50", "jpeg_q40", "crop90", "brighter10", "png", "exif_stripped", "burst")


def _jpeg(img: Image.Image, path: Path, **kw) -> Path:
    img.save(path, "JPEG", quality=kw.pop("quality", 90), **kw)
    return path


def _exif() -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Pixcam", "P1"  # Make, Model
    exif.get_ifd(0x8769)[0x9003] = "2019:05:02 10:00:00"  # DateTimeOriginal
    return exif


def _shifted(img: Image.Image, dx: float, dy: float) -> Image.Image:
    """A burst frame: the same scene seen a few pixels aside (the frame keeps its size)."""
    w, h = img.size
    x, y = round(w * (0.03 + dx)), round(h * (0.03 + dy))
    return img.crop((x, y, x + round(w * 0.94), y + round(h * 0.94))).resize((w, h))


def plant(source: Path, kind: str, folder: Path) -> list[Path]:
    """Files that are copies of one another, made from ``source`` by ``kind``."""
    img = Image.open(source).convert("RGB")
    w, h = img.size
    stem = folder / source.stem
    if kind == "exif_stripped":  # the original carries EXIF, the copy the same pixels without
        return [_jpeg(img, Path(f"{stem}.jpg"), exif=_exif()), _jpeg(img, Path(f"{stem}-x.jpg"))]
    if kind == "burst":
        frames = [_shifted(img, d, d / 2) for d in (0.0, 0.012, 0.024)]
        return [_jpeg(f, Path(f"{stem}-burst{i}.jpg")) for i, f in enumerate(frames)]
    original = folder / source.name
    original.write_bytes(source.read_bytes())
    copy = Path(f"{stem}-{kind}")
    if kind == "resize50":
        made = _jpeg(img.resize((w // 2, h // 2), Image.LANCZOS), copy.with_suffix(".jpg"))
    elif kind == "jpeg_q40":
        made = _jpeg(img, copy.with_suffix(".jpg"), quality=40)
    elif kind == "crop90":
        cw, ch = round(w * 0.9), round(h * 0.9)
        box = ((w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw, (h - ch) // 2 + ch)
        made = _jpeg(img.crop(box), copy.with_suffix(".jpg"))
    elif kind == "brighter10":
        made = _jpeg(ImageEnhance.Brightness(img).enhance(1.1), copy.with_suffix(".jpg"))
    else:
        made = copy.with_suffix(".png")
        img.save(made, "PNG")
    return [original, made]


def look_alikes(source: Path, folder: Path) -> list[Path]:
    """Two different framings of one scene (left and right 60%): alike, but not copies."""
    img = Image.open(source).convert("RGB")
    w, h = img.size
    left = _jpeg(img.crop((0, 0, w * 6 // 10, h)), folder / f"{source.stem}-left.jpg")
    right = _jpeg(img.crop((w * 4 // 10, 0, w, h)), folder / f"{source.stem}-right.jpg")
    return [left, right]


def nearest_strangers(photos: list[Path], n: int) -> list[Path]:
    """The photos of the ``n`` closest pairs by perceptual hash among distinct real photos:
    the look-alikes most likely to be taken for copies."""
    from pixfind.search import phash
    from pixfind.search.images import decode_file

    hashes = [phash.image_hashes(decode_file(p, 224).image) for p in photos]
    full = phash.to_codes([h[0] for h in hashes])
    dist = phash.hamming(full[:, None], full[None])
    dist[np.tril_indices(len(photos))] = 99
    picked: list[Path] = []
    for flat in np.argsort(dist, axis=None)[: 3 * n]:
        i, j = np.unravel_index(flat, dist.shape)
        picked += [photos[k] for k in (i, j) if photos[k] not in picked]
        if len(picked) >= 2 * n:
            break
    return picked


def test_planted_copies_found_and_distinct_photos_left_alone(cli, tmp_path):
    pool = shared_photos(312)
    root = tmp_path / "photos"
    (root / "planted").mkdir(parents=True)
    (root / "distinct").mkdir()
    families: list[list[Path]] = []
    for k, source in enumerate(pool[:56]):  # 8 of each kind
        families.append(plant(source, KINDS[k % len(KINDS)], root / "planted"))
    distinct: list[Path] = []
    for source in pool[56:72]:
        distinct += look_alikes(source, root / "distinct")
    for source in nearest_strangers(pool[72:272], 30) + pool[272:312]:
        if not (root / "distinct" / source.name).exists():
            distinct.append(Path(root / "distinct" / source.name))
            distinct[-1].write_bytes(source.read_bytes())
    truth = {frozenset(p) for f in families for p in itertools.combinations(map(str, f), 2)}

    cli("index", root, *MODEL, "--workers", "0")
    found = json_out(cli("duplicates", "--json"))
    groups = [[c["path"] for c in g["copies"]] for g in found["groups"]]
    pairs = {frozenset(p) for g in groups for p in itertools.combinations(g, 2)}
    hit = len(pairs & truth)
    precision, recall = hit / max(len(pairs), 1), hit / len(truth)
    strangers = {str(p) for p in distinct}
    mixed = [g for g in groups if set(g) & strangers]
    print(f"\nplanted pairs {len(truth)}, found {len(pairs)}: precision {precision:.3f}, "
          f"recall {recall:.3f}; groups with distinct photos: {len(mixed)}")  # fmt: skip
    assert recall >= 0.95 and precision >= 0.95, (precision, recall, groups)
    assert mixed == [], mixed  # look-alikes and the closest strangers are never grouped

    # the best copy by rule: the larger of a resize, the one with EXIF by --keep metadata
    by_best = {g["copies"][0]["path"]: g for g in found["groups"]}
    resized = [f for k, f in enumerate(families) if KINDS[k % len(KINDS)] == "resize50"]
    assert all(str(f[0]) in by_best for f in resized)
    meta = json_out(cli("duplicates", "--json", "--keep", "metadata"))
    exif_best = {g["copies"][0]["path"] for g in meta["groups"]}
    stripped = [f for k, f in enumerate(families) if KINDS[k % len(KINDS)] == "exif_stripped"]
    assert all(str(f[0]) in exif_best for f in stripped)

    # --paths-of-copies: every file but the best of each group, nothing deleted
    listed = cli("duplicates", "--paths-of-copies").stdout.splitlines()
    assert sorted(listed) == sorted(p for g in groups for p in g[1:])
    assert all(os.path.exists(p) for g in groups for p in g)


def test_duplicates_cli_filters_sheets_and_an_older_index(cli, tmp_path):
    root = tmp_path / "photos"
    for i in range(6):
        make_picture(root / "a" / f"p{i}.jpg", seed=i, size=(320, 240))
    original = root / "a" / "p0.jpg"
    (root / "b").mkdir()
    (root / "b" / "same bytes.jpg").write_bytes(original.read_bytes())
    with Image.open(original) as img:
        img.resize((160, 120)).save(root / "b" / "small\ncopy.png")
    cli("index", root, *MODEL, "--workers", "0")

    found = json_out(cli("duplicates", "--json"))
    assert [len(g["copies"]) for g in found["groups"]] == [3]
    group = found["groups"][0]
    assert group["kind"] == "near" and group["copies"][0]["width"] == 320
    assert [c["best"] for c in group["copies"]] == [True, False, False]

    out = cli("duplicates", "--print0").stdout_bytes
    assert sorted(out.split(b"\0")[:-1]) == sorted(
        os.fsencode(root / "b" / n) for n in ("same bytes.jpg", "small\ncopy.png")
    )
    only_b = json_out(cli("duplicates", "--json", "--folder", root / "b"))
    assert [len(g["copies"]) for g in only_b["groups"]] == [2]
    assert json_out(cli("duplicates", "--json", "--type", "png"))["groups"] == []
    strict = json_out(cli("duplicates", "--json", "-t", "0"))["groups"]
    assert {str(original), str(root / "b" / "same bytes.jpg")} <= {
        c["path"] for c in strict[0]["copies"]
    }

    sheets = tmp_path / "sheets"
    cli("duplicates", "--sheet", sheets)
    with Image.open(sheets / "group-0001.jpg") as sheet:
        assert sheet.width >= 3 * 240 and sheet.height > 240
    assert cli("duplicates", "-t", "99", ok=False).exit_code == 1
    _check_api(tmp_path / "index", found)

    # an index from before perceptual hashes: still opens, finds exact copies, and the next
    # `pixfind index` fills the hashes without embedding anything again
    from pixfind.search.store import Store

    Store.open(tmp_path / "index").table.drop_columns(["phash", "phash_crop"])
    old = cli("duplicates")
    assert "no perceptual hash" in old.output and "1 group(s)" in old.stdout
    report = json_out(cli("index", root, *MODEL, "--json", "--workers", "0"))
    assert report["rehashed"] == 8 and report["added"] == report["updated"] == 0
    assert json_out(cli("duplicates", "--json")) == found


def _check_api(home: Path, found: dict) -> None:
    """GET /api/duplicates: the CLI's groups, paged, with image and thumbnail links."""
    from fastapi.testclient import TestClient
    from pixfind.api.app import create_app
    from pixfind.api.settings import Settings

    with TestClient(create_app(Settings(index=home)), base_url="http://127.0.0.1") as client:
        body = client.get("/api/duplicates").json()
        assert body["total_groups"] == 1 and body["next_offset"] is None
        copies = body["groups"][0]["copies"]
        assert [c["path"] for c in copies] == [c["path"] for c in found["groups"][0]["copies"]]
        assert copies[0]["best"] and isinstance(copies[0]["id"], str)
        thumb = client.get(copies[1]["thumbnail_url"])
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        page = client.get("/api/duplicates", params={"limit": 1, "offset": 1}).json()
        assert page["groups"] == [] and page["total_groups"] == 1
        assert client.get("/api/duplicates", params={"type": "png"}).json()["groups"] == []
        assert client.get("/api/duplicates", params={"threshold": 99}).status_code == 422
        assert client.get("/api/duplicates", params={"after": "someday"}).status_code == 400
