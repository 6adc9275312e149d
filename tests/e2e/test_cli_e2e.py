"""End to end through the CLI: real files, real open_clip, real LanceDB, real FAISS."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from PIL import Image

from ..conftest import TINY, json_out, shared_photos

MODEL = ["--model", TINY[0], "--pretrained", TINY[1]]


def _index(cli, *paths, extra=()):
    return json_out(cli("index", *paths, *MODEL, "--json", *extra))


def test_index_status_search_incremental(cli, picture_dir, tmp_path):
    report = _index(cli, picture_dir)
    assert report["added"] == 12 and report["skipped"] == [] and report["total"] == 12
    assert not any(".thumbnails" in p["path"] for p in report["skipped"])

    status = json_out(cli("status", "--json"))
    assert status["images"] == 12 and status["model"] == "pixfind-tiny" and status["dim"] == 128
    assert status["faiss"]["up_to_date"] and status["last_update"]

    # an exact copy outside the index finds its original first
    target = picture_dir / "home" / "pic02.webp"
    copy = tmp_path / "query.webp"
    shutil.copy(target, copy)
    hits = json_out(cli("search", "--image", copy, "-k", "3", "--json"))["results"]
    assert hits[0]["path"] == str(target) and hits[0]["score"] > 0.99

    # an indexed image as the query is left out of its own results
    hits = json_out(cli("search", "--image", target, "-k", "20", "--json"))["results"]
    assert str(target) not in [h["path"] for h in hits] and len(hits) == 11

    # text search: ranked, k respected, --paths prints bare paths
    hits = json_out(cli("search", "a red circle", "-k", "5", "--json"))["results"]
    assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    assert hits == sorted(hits, key=lambda h: -h["score"])
    paths = cli("search", "a red circle", "-k", "5", "--paths").stdout.split()
    assert paths == [h["path"] for h in hits]
    table = cli("search", "a red circle", "-k", "5").stdout.splitlines()
    assert table[0].split() == ["rank", "score", "path"]
    assert [line.split()[2] for line in table[1:]] == paths

    # nothing changed: nothing embedded
    again = _index(cli, picture_dir)
    assert (again["added"], again["updated"], again["removed"], again["unchanged"]) == (0, 0, 0, 12)

    # one file modified: exactly one re-embedded
    changed = picture_dir / "trips" / "pic00.jpg"
    Image.new("RGB", (90, 90), (10, 200, 30)).save(changed)
    os.utime(changed, (1e9, 1e9))
    again = _index(cli, picture_dir)
    assert (again["added"], again["updated"], again["unchanged"]) == (0, 1, 11)

    # one file deleted: removed from the index
    (picture_dir / "home" / "pic01.png").unlink()
    again = _index(cli, picture_dir)
    assert (again["removed"], again["total"]) == (1, 11)
    hits = json_out(cli("search", "anything", "-k", "50", "--json"))["results"]
    assert str(picture_dir / "home" / "pic01.png") not in {h["path"] for h in hits}


def test_resized_recompressed_copy_ranks_above_unrelated_real_photos(cli, tmp_path):
    photos = shared_photos(40)
    folder = tmp_path / "real"
    folder.mkdir()
    for p in photos:
        shutil.copy(p, folder / p.name)
    _index(cli, folder)
    for original in photos[:5]:
        img = Image.open(original)
        small = tmp_path / f"small-{original.name}"
        img.resize((img.width * 2 // 3, img.height * 2 // 3)).save(small, quality=55)
        hits = json_out(cli("search", "--image", small, "-k", "3", "--json"))["results"]
        assert hits[0]["path"] == str(folder / original.name), hits


def test_other_model_is_refused_with_a_clear_error(cli, picture_dir):
    _index(cli, picture_dir)
    result = cli("search", "a dog", "--model", "ViT-S-32", "--pretrained", "none", ok=False)
    assert result.exit_code == 1
    assert "pixfind-tiny" in result.output and "ViT-S-32" in result.output
    assert "rebuild" in result.output and "Traceback" not in result.output
    result = cli("index", picture_dir, "--model", "ViT-S-32", "--pretrained", "none", ok=False)
    assert result.exit_code == 1 and "pixfind-tiny" in result.output


def test_other_model_is_refused_before_its_weights_are_fetched(
    cli, picture_dir, tmp_path, monkeypatch
):
    """Offline, asking for the default model must name the mismatch, not a failed download."""
    _index(cli, picture_dir)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for command in (["search", "a dog"], ["index", picture_dir]):
        result = cli(*command, "--model", "ViT-B-32", ok=False)
        assert result.exit_code == 1
        assert "built with pixfind-tiny" in result.output, result.output
        assert "ViT-B-32/laion2b_s34b_b79k" in result.output and "download" not in result.output


def test_rebuild_switches_model(cli, picture_dir):
    _index(cli, picture_dir)
    report = _index(cli, picture_dir, extra=["--rebuild"])
    assert report["added"] == 12 and report["total"] == 12


def test_empty_index_and_missing_index_say_so(cli, tmp_path):
    result = cli("search", "a dog", ok=False)
    assert result.exit_code == 1 and "no index" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    _index(cli, empty)
    result = cli("search", "a dog", ok=False)
    assert result.exit_code == 1 and "holds no images" in result.output


def test_bad_queries_exit_nonzero(cli, picture_dir, tmp_path):
    _index(cli, picture_dir)
    assert cli("search", ok=False).exit_code == 1
    assert cli("search", "  ", ok=False).exit_code == 1
    bogus = tmp_path / "fake.jpg"
    bogus.write_text("not really")
    result = cli("search", "--image", bogus, ok=False)
    assert result.exit_code == 1 and "can't use" in result.output
    assert cli("search", "x", "-k", "0", ok=False).exit_code == 1


def test_exclude_hidden_and_file_roots(cli, picture_dir):
    report = _index(cli, picture_dir, extra=["--exclude", "trips", "--hidden"])
    paths = {Path(p["path"]).name for p in report["skipped"]}
    assert report["added"] == 9  # 12 - 4 under trips/ + 1 hidden
    assert not paths


def test_models_lists_default(cli):
    text = cli("models").stdout
    assert "ViT-B-32" in text and "laion2b_s34b_b79k" in text
