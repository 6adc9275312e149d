"""The web page in a real browser: Debian's chromium driven by Playwright against a real
uvicorn server on 127.0.0.1 serving a real index. Screenshots go to test-artifacts/."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image
from pixfind.api.app import create_app
from pixfind.api.settings import Settings
from pixfind.indexer import IndexOptions, run_index
from pixfind.search.types import EncoderSpec

from ..conftest import ROOT, SHARED_PHOTOS, TINY, make_picture
from ..live_server import live_server

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
IMAGES_LOADED = """n => {
  const imgs = [...document.querySelectorAll('.card img')].slice(0, n);
  return imgs.length === n && imgs.every(i => i.complete && i.naturalWidth > 0);
}"""


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is absent (apt-get install chromium); browser test skipped")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def photo_index(tmp_path_factory) -> tuple[Path, list[Path]]:
    """60 real photos when ../shared/photos is there (a realistic page), else 40 generated."""
    base = tmp_path_factory.mktemp("web")
    folder = base / "photos"
    folder.mkdir()
    real = SHARED_PHOTOS / "images" / "flickr8k"
    if real.is_dir():
        photos = [Path(shutil.copy(p, folder / p.name)) for p in sorted(real.glob("*.jpg"))[:60]]
    else:
        photos = [make_picture(folder / f"pic{i:02d}.jpg", seed=i) for i in range(40)]
    spec = EncoderSpec(TINY[0], None)
    run_index(base / "index", IndexOptions(roots=[str(folder)], workers=0), spec=spec)
    return base / "index", photos


def open_page(browser, base: str):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: (
            problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None
        ),
    )
    page.on(
        "response",
        lambda r: problems.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None,
    )
    page.goto(base + "/")
    return page, problems


def test_search_similar_upload_and_scroll(browser, photo_index):
    home, photos = photo_index
    ARTIFACTS.mkdir(exist_ok=True)
    with live_server(create_app(Settings(index=home))) as base:
        page, problems = open_page(browser, base)
        page.wait_for_function(
            "() => document.getElementById('status').textContent.includes('photos')"
        )
        assert f"{len(photos)} photos" in page.text_content("#status")

        # type a query: a grid of thumbnails with scores loads
        page.fill("#q", "a dog running on the grass")
        page.press("#q", "Enter")
        page.wait_for_function(IMAGES_LOADED, arg=10)
        scores = [float(s) for s in page.locator(".card .score").all_text_contents()]
        assert len(scores) == min(30, len(photos))
        assert scores == sorted(scores, reverse=True)
        assert "?q=a%20dog" in page.url
        page.screenshot(path=str(ARTIFACTS / "web-search.png"))

        # click a thumbnail: the full image opens in the viewer
        first_id = page.locator(".card").first.get_attribute("data-id")
        page.locator(".card .thumb").first.click()
        page.wait_for_function(
            "() => { const i = document.getElementById('viewer-img');"
            " return document.getElementById('viewer').open && i.complete && i.naturalWidth > 0 }"
        )
        page.screenshot(path=str(ARTIFACTS / "web-viewer.png"))
        page.keyboard.press("Escape")

        # "more like this": the image itself is left out, its neighbours come in
        page.locator(".card .similar").first.click()
        page.wait_for_function(
            "id => { const c = [...document.querySelectorAll('.card')];"
            " return c.length > 0 && !c.some(x => x.dataset.id === id) }",
            arg=first_id,
        )
        page.wait_for_function(IMAGES_LOADED, arg=4)
        assert page.is_visible("#query-image")
        assert "More like" in page.text_content("#query-label")

        # search by uploading an image: an indexed photo finds itself first
        query = photos[7]
        page.set_input_files("#file", str(query))
        page.wait_for_function(
            "p => { const a = document.querySelector('.card .thumb'); return a && a.title === p }",
            arg=str(query),
        )
        page.wait_for_function(IMAGES_LOADED, arg=10)
        assert float(page.locator(".card .score").first.text_content()) > 0.99
        page.screenshot(path=str(ARTIFACTS / "web-upload.png"))

        # drag and drop an image onto the page (here the top result's file): same as choosing it
        page.evaluate(
            """async name => {
              const blob = await (await fetch(document.querySelector('.card .thumb').href)).blob();
              const data = new DataTransfer();
              data.items.add(new File([blob], name, {type: blob.type}));
              for (const type of ['dragenter', 'dragover', 'drop']) {
                window.dispatchEvent(new DragEvent(type, {dataTransfer: data, cancelable: true}));
              }
            }""",
            "dropped-photo.jpg",
        )
        page.wait_for_function(
            "n => document.getElementById('query-label').textContent.includes(n)",
            arg="dropped-photo.jpg",
        )
        page.wait_for_function(IMAGES_LOADED, arg=4)
        assert page.is_hidden("#drop")
        # the dropped bytes were the top result's file: it finds itself first
        assert page.locator(".card .thumb").first.get_attribute("title") == str(query)

        # infinite scroll: the next page loads when the bottom comes into view
        if len(photos) > 30:
            page.mouse.wheel(0, 20000)
            page.wait_for_function(
                "n => document.querySelectorAll('.card').length === n", arg=len(photos)
            )
            assert page.is_hidden("#more")
        assert not problems, problems
        page.close()


def test_page_asks_for_the_token(browser, photo_index):
    home, photos = photo_index
    ARTIFACTS.mkdir(exist_ok=True)
    settings = replace(Settings(index=home), token="family-photos-2026")
    with live_server(create_app(settings)) as base:
        page, problems = open_page(browser, base)
        page.wait_for_selector("#login[open]")
        page.screenshot(path=str(ARTIFACTS / "web-login.png"))
        page.fill("#token", "wrong")
        page.click("#login-form button")
        page.wait_for_function("() => !document.getElementById('login-error').hidden")
        page.fill("#token", "family-photos-2026")
        page.click("#login-form button")
        page.wait_for_function(
            "() => document.getElementById('status').textContent.includes('photos')"
        )
        page.fill("#q", "people at the beach")
        page.press("#q", "Enter")
        page.wait_for_function(IMAGES_LOADED, arg=4)  # <img> requests carry the session cookie
        page.close()
        # only the expected refusals before signing in
        assert problems and all("401" in p for p in problems), problems


def test_matched_words_are_highlighted_under_the_thumbnail(browser, tmp_path):
    folder = tmp_path / "photos"
    for i in range(4):
        make_picture(folder / "Tokyo 2023" / f"IMG_{i:04d}.jpg", seed=i)
    for i in range(8):
        make_picture(folder / "misc" / f"IMG_{10 + i:04d}.jpg", seed=10 + i)
    spec = EncoderSpec(TINY[0], None)
    run_index(tmp_path / "index", IndexOptions(roots=[str(folder)], workers=0), spec=spec)
    ARTIFACTS.mkdir(exist_ok=True)
    with live_server(create_app(Settings(index=tmp_path / "index"))) as base:
        page, problems = open_page(browser, base)
        page.fill("#q", "tokyo")
        page.press("#q", "Enter")
        page.wait_for_function(IMAGES_LOADED, arg=4)
        cards = page.locator(".card")
        for i in range(4):  # the Tokyo folder's photos come first, the word highlighted
            assert cards.nth(i).locator(".matched mark").all_text_contents() == ["Tokyo"]
            assert "folder" in cards.nth(i).locator(".matched").text_content()
        assert cards.nth(4).locator(".matched").count() == 0  # no words matched there
        page.screenshot(path=str(ARTIFACTS / "web-matched-words.png"))
        page.close()
    assert problems == []


def test_duplicates_view_shows_groups_best_copy_marked(browser, tmp_path):
    folder = tmp_path / "photos"
    for i in range(8):
        make_picture(folder / f"IMG_{i:04d}.jpg", seed=i, size=(320, 240))
    (folder / "copy of IMG_0001.jpg").write_bytes((folder / "IMG_0001.jpg").read_bytes())
    with Image.open(folder / "IMG_0002.jpg") as img:
        img.resize((160, 120)).save(folder / "IMG_0002 small.png")
    spec = EncoderSpec(TINY[0], None)
    run_index(tmp_path / "index", IndexOptions(roots=[str(folder)], workers=0), spec=spec)
    ARTIFACTS.mkdir(exist_ok=True)
    with live_server(create_app(Settings(index=tmp_path / "index"))) as base:
        page, problems = open_page(browser, base)
        page.click("#dups-button")
        page.wait_for_selector(".dup-group")
        page.wait_for_function(
            "() => [...document.querySelectorAll('.dup-copy img')]"
            ".every(i => i.complete && i.naturalWidth > 0)"
        )
        groups = page.locator(".dup-group")
        assert groups.count() == 2 and "?view=duplicates" in page.url
        for i in range(2):  # two photos each, the first one the best copy, framed
            copies = groups.nth(i).locator(".dup-copy")
            assert copies.count() == 2
            assert copies.first.locator(".badge").text_content() == "Best copy"
            assert "best" in copies.first.get_attribute("class")
            assert "best" not in copies.nth(1).get_attribute("class")
        best = {groups.nth(i).locator(".dup-copy .path").first.text_content() for i in range(2)}
        assert str(folder / "IMG_0002.jpg") in best  # the larger one, not the small PNG
        assert "320×240" in page.text_content(".dup-group")
        assert "2 groups of duplicates" in page.text_content("#message")
        page.screenshot(path=str(ARTIFACTS / "web-duplicates.png"), full_page=True)

        # a search leaves the view; reloading ?view=duplicates opens it again
        page.fill("#q", "a red circle")
        page.press("#q", "Enter")
        page.wait_for_function(IMAGES_LOADED, arg=4)
        assert page.is_hidden("#dups")
        page.goto(base + "/?view=duplicates")
        page.wait_for_selector(".dup-group")
        page.close()
    assert problems == []
