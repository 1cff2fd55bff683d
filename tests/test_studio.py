"""The studio page at ``/`` in a real browser: Debian's chromium driven by Playwright, against ``python -m api_shim``
in pod mode on the tiny checkpoint. Compose, generate, listen (the audio element and the waveform from the
decoded audio), download, an error next to its field, the history across a reload, a phone's width, the API key.

Screenshots of the finished page go to ``$ACESTEP_TEST_ARTIFACTS`` (default ``test-artifacts/`` of the repository).
Without chromium these tests fail, on purpose: CI (``.ci/run``) installs it.
"""

from __future__ import annotations

import html.parser
import os
import re
import shutil
import urllib.parse
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, decode, start_shim, stop

ARTIFACTS = Path(os.environ.get("ACESTEP_TEST_ARTIFACTS") or ROOT / "test-artifacts")
STUDIO = ROOT / "api_shim" / "studio"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
KEY = "studio-s3cret"
CAPTION = "warm lofi piano, vinyl crackle"
DONE_MS = 60_000
# every audio element has its metadata: a finite duration
AUDIO_READY = """n => { const a = [...document.querySelectorAll('#songs li:not(.gone) audio')];
                        return a.length === n && a.every(x => x.readyState >= 1 && isFinite(x.duration)); }"""


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the studio tests need Playwright's Python package: pip install -e '.[dev]'")
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.fail("the studio tests need a chromium on PATH (Debian: apt-get install chromium; .ci/run installs "
                    "it). Playwright's own browser download is not used.")
    # chromium will not start its sandbox as root (CI containers run as root)
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=args)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def shim(checkpoint_dir, tmp_path_factory):
    process, url = start_shim(checkpoint_dir, tmp_path_factory.mktemp("studio") / "outputs")
    try:
        yield url
    finally:
        stop(process)


class Page:
    """A page in its own browser context, with the script errors and policy violations it logged."""

    def __init__(self, browser, viewport: dict, **options):
        self.context = browser.new_context(viewport=viewport, accept_downloads=True, **options)
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("pageerror", lambda err: self.problems.append(f"script error: {err}"))
        self.page.on("console", self._console)

    def _console(self, message) -> None:
        text = message.text
        # a refused request (400, 401, 404) is logged by the browser itself; those are expected here
        if message.type == "error" and not text.startswith("Failed to load resource"):
            self.problems.append(f"console: {text}")

    def close(self) -> None:
        self.context.close()
        assert not self.problems, self.problems


@pytest.fixture
def page(browser):
    opened = Page(browser, DESKTOP)
    yield opened.page
    opened.close()


def open_studio(page, url: str) -> None:
    page.goto(url + "/")
    page.wait_for_selector("#server-status[data-state=ok]")


def generate(page, duration: int = 10, batch: int = 1, seed: str = "") -> None:
    page.get_by_label("Duration", exact=True).fill(str(duration))
    page.get_by_label("Batch size", exact=True).fill(str(batch))
    page.get_by_label("Seed", exact=True).fill(seed)
    page.get_by_role("button", name="Generate").click()
    finished(page, batch)


def finished(page, songs: int) -> None:
    """The progress bar at its end, the stage saying so, and every song's audio element with its duration."""
    page.wait_for_function("() => document.querySelector('#task-progress').value === 1", timeout=DONE_MS)
    stage = page.locator("#task-stage")
    assert re.fullmatch(rf"Done: {songs} songs?", stage.inner_text()), stage.inner_text()
    page.wait_for_function(AUDIO_READY, arg=songs, timeout=DONE_MS)


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def test_the_page_and_its_files_are_served_under_a_strict_policy(shim):
    url = shim
    page = requests.get(f"{url}/", timeout=5)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy and "unsafe" not in policy
    assert page.headers["x-content-type-options"] == "nosniff" and "Accept" in page.headers["vary"]
    # nothing inline for the policy to refuse: scripts and styles come from the package's files
    assert not re.search(r"<script(?![^>]*\bsrc=)", page.text) and "<style" not in page.text
    assert not re.search(r"\s(?:style|on[a-z]+)=", page.text)
    for name, kind in [("studio.js", "javascript"), ("studio.css", "text/css"), ("icon.svg", "image/svg+xml")]:
        asset = requests.get(f"{url}/studio/{name}", timeout=5)
        assert asset.status_code == 200 and kind in asset.headers["content-type"], name
        assert asset.headers["x-content-type-options"] == "nosniff"
        assert asset.content == (STUDIO / name).read_bytes()
    assert requests.head(f"{url}/", timeout=5).status_code == 200
    # a JSON client asking / gets the envelope, not the page
    as_json = requests.get(f"{url}/", headers={"Accept": "application/json"}, timeout=5)
    assert as_json.status_code == 200 and as_json.headers["content-type"] == "application/json"
    assert as_json.json()["code"] == 200 and as_json.json()["data"]["docs"] == "/docs"
    # the API is as it was, and nosniff everywhere; /docs keeps its CDN-served Swagger UI (no policy of ours there)
    health = requests.get(f"{url}/health", timeout=5)
    assert health.json()["data"]["status"] == "ok" and health.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" not in requests.get(f"{url}/docs", timeout=5).headers
    missing = requests.get(f"{url}/studio/nothing.js", timeout=5)
    assert missing.status_code == 404 and missing.json()["error"] == "no endpoint /studio/nothing.js"


class _Options(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.select: str | None = None
        self.options: dict[str, list[str]] = {}
        self.inputs: dict[str, dict[str, str]] = {}

    def handle_starttag(self, tag, attrs):
        attrs = {k: v or "" for k, v in attrs}
        if tag == "select":
            self.select = attrs["id"]
        elif tag == "option" and self.select:
            self.options.setdefault(self.select, []).append(attrs["value"])
        elif tag == "input" and "id" in attrs:
            self.inputs[attrs["id"]] = attrs

    def handle_endtag(self, tag):
        if tag == "select":
            self.select = None


def test_the_page_offers_what_the_contract_allows():
    from inference.contract import vocabulary

    parsed = _Options()
    parsed.feed((STUDIO / "index.html").read_text(encoding="utf-8"))
    assert parsed.options["format"] == list(vocabulary.AUDIO_FORMATS)
    assert parsed.options["language"] == list(vocabulary.VALID_LANGUAGES)
    assert parsed.options["time-signature"] == ["", *vocabulary.VALID_TIME_SIGNATURES]
    duration, batch = parsed.inputs["duration"], parsed.inputs["batch-size"]
    assert float(duration["min"]) == vocabulary.MIN_DURATION_S and float(duration["max"]) == vocabulary.MAX_DURATION_S
    assert int(batch["max"]) == vocabulary.MAX_BATCH_SIZE


def test_an_installed_package_has_the_page_files():
    import fnmatch
    import tomllib

    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["api_shim"]
    shipped = [path.relative_to(STUDIO.parent).as_posix() for path in STUDIO.iterdir()]
    assert {"studio/index.html", "studio/studio.js", "studio/studio.css"} <= set(shipped)
    for name in shipped:
        assert any(fnmatch.fnmatch(name, glob) for glob in globs), f"{name} is missing from package-data"


def test_compose_generate_listen_download_and_reload(shim, page):
    url = shim
    open_studio(page, url)
    assert page.locator("#lm-options").is_hidden()  # this server has no 5 Hz LM: its switches are not offered
    page.get_by_label("Caption", exact=True).fill(CAPTION)
    lyrics = page.get_by_label("Lyrics", exact=True)
    lyrics.click()
    page.get_by_role("button", name="[Verse]").click()  # inserted at the cursor, the cursor after it
    page.keyboard.type("soft rain on the window")
    page.get_by_role("button", name="[Chorus]").click()
    page.keyboard.type("stay")
    assert lyrics.input_value() == "[Verse]\nsoft rain on the window\n\n[Chorus]\nstay"
    page.get_by_label("Format", exact=True).select_option("mp3")
    generate(page, duration=10, batch=2, seed="7")

    songs = page.locator("#songs > li")
    assert songs.count() == 2
    assert "seed 7" in songs.nth(0).inner_text() and "seed 8" in songs.nth(1).inner_text()
    durations = page.eval_on_selector_all("#songs audio", "a => a.map(x => x.duration)")
    assert all(abs(d - 10) < 0.1 for d in durations), durations
    # the waveform: drawn from the decoded audio, so the canvas has painted pixels
    page.wait_for_function("() => [...document.querySelectorAll('canvas.wave')].every(c => c.dataset.drawn)")
    painted = page.eval_on_selector("canvas.wave", """c => { const d = c.getContext('2d')
        .getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0;
        return n / (c.width * c.height); }""")
    assert painted > 0.05, painted

    with page.expect_download() as download:
        page.get_by_role("link", name=re.compile(r"^Download song 1 \(MP3")).click()
    saved = Path(download.value.path())
    assert download.value.suggested_filename.endswith("-7.mp3")
    samples, rate = decode(saved.read_bytes())
    assert rate == 48000 and samples.shape[1] == 2 and abs(samples.shape[0] / rate - 10) < 0.05
    screenshot(page, "studio.png")

    page.reload()  # the history is this browser's: kept across the reload, and its songs play again
    page.wait_for_selector("#server-status[data-state=ok]")
    entry = page.locator("#history-list li").filter(has_text=CAPTION)
    assert entry.count() == 1 and "Done: 2 songs" in entry.inner_text()
    page.wait_for_function(AUDIO_READY, arg=2, timeout=DONE_MS)
    # while the server keeps its files: one removed (as ACESTEP_RESULT_TTL would), the page says so
    file = page.evaluate("JSON.parse(localStorage.getItem('acestep-studio-history-v1'))[0].songs[1].file")
    Path(urllib.parse.unquote(file.split("path=", 1)[1])).unlink()
    page.reload()
    entry.get_by_role("button", name=re.compile("^" + re.escape(CAPTION))).click()
    page.wait_for_function(AUDIO_READY, arg=1, timeout=DONE_MS)
    assert "No longer on the server" in page.locator("#songs li.gone").inner_text()


def test_an_out_of_range_duration_is_shown_next_to_its_field(shim, page):
    open_studio(page, shim)
    page.get_by_label("Caption", exact=True).fill(CAPTION)
    # by keyboard: Tab reaches the first tag button, its focus is visible, Enter inserts it and returns to the lyrics
    page.get_by_label("Caption", exact=True).press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "[Intro]"
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"
    page.keyboard.press("Enter")
    assert page.get_by_label("Lyrics", exact=True).input_value() == "[Intro]\n"
    assert page.evaluate("document.activeElement.id") == "lyrics"
    page.get_by_label("Duration", exact=True).fill("5")
    page.get_by_role("button", name="Generate").click()
    duration = page.get_by_label("Duration", exact=True)
    page.wait_for_selector("#duration[aria-invalid=true]")
    described = duration.get_attribute("aria-describedby").split()
    message = page.locator(f"#{described[0]}")
    assert message.inner_text() == "Duration must be between 10 and 600 seconds (got 5)"
    # next to its field (in the same group), announced, and the field has the focus to mend it
    assert page.locator(".field", has=duration).locator(f"#{described[0]}").count() == 1
    assert page.evaluate("document.activeElement.id") == "duration"
    assert "check Duration" in page.get_by_role("alert").filter(has_text="Not generated").inner_text()
    assert page.locator("#history-list li").count() == 0  # nothing was queued
    screenshot(page, "studio-error.png")
    duration.fill("10")  # mending the field clears its error
    assert duration.get_attribute("aria-invalid") is None and page.locator(f"#{described[0]}").count() == 0
    page.get_by_role("button", name="Random sample").click()  # fills the form from /create_random_sample
    page.wait_for_function("() => document.querySelector('#caption').value !== 'warm lofi piano, vinyl crackle'")
    assert page.get_by_label("Lyrics", exact=True).input_value().startswith("[")
    assert 10 <= float(duration.input_value()) <= 600


def test_a_phone_width_has_no_horizontal_scroll(shim, browser):
    phone = Page(browser, PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    try:
        page = phone.page
        open_studio(page, shim)
        page.get_by_label("Caption", exact=True).fill(CAPTION + ", a very long caption " + "without_breaks_" * 8)
        page.get_by_text("More settings").click()
        generate(page, duration=10, batch=1)
        widths = page.evaluate("[document.documentElement.scrollWidth, document.body.scrollWidth, innerWidth]")
        assert max(widths[:2]) <= widths[2] == PHONE["width"], widths
        screenshot(page, "studio-phone.png")
    finally:
        phone.close()


def test_the_api_key_is_asked_for_once_and_sent(lm_checkpoint_dir, tmp_path_factory, browser):
    process, url = start_shim(lm_checkpoint_dir, tmp_path_factory.mktemp("studio-key") / "outputs",
                              ACESTEP_API_KEY=KEY)
    keyed = Page(browser, DESKTOP, color_scheme="dark")
    try:
        page = keyed.page
        page.goto(url + "/")
        dialog = page.get_by_role("dialog", name="API key")
        dialog.wait_for()
        screenshot(page, "studio-key-dark.png")
        dialog.get_by_label("API key").fill("not-the-key")
        dialog.get_by_role("button", name="Use key").click()
        page.wait_for_function("() => /refused/.test(document.querySelector('#key-message').textContent)")
        assert dialog.is_visible()
        dialog.get_by_label("API key").fill(KEY)
        dialog.get_by_role("button", name="Use key").click()
        page.wait_for_selector("#server-status[data-state=ok]")
        assert dialog.is_hidden()
        assert page.locator("#lm-options").is_visible()  # this server has the LM: its switches are offered
        for name in ("Thinking", "Format the input", "Write from a description"):
            assert page.get_by_label(name).count() == 1, name
        page.get_by_role("button", name="Random description").click()
        page.wait_for_function("() => document.querySelector('#sample-query').value !== ''")
        page.get_by_label("Write from a description").fill("")
        page.get_by_label("Caption", exact=True).fill(CAPTION)
        generate(page, duration=10, batch=1)  # the audio came through fetch with the key: /v1/audio needs it
        screenshot(page, "studio-lm-dark.png")
        # kept for this tab only unless "Remember on this browser" was ticked
        stored = page.evaluate("[sessionStorage.getItem('acestep-studio-key'), localStorage.getItem('acestep-studio-key')]")
        assert stored == [KEY, None]
        page.reload()
        page.wait_for_selector("#server-status[data-state=ok]")
        page.wait_for_function(AUDIO_READY, arg=1, timeout=DONE_MS)
        assert dialog.is_hidden()  # asked once
    finally:
        keyed.close()
        stop(process)
