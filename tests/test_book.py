"""The course site (``make book``): built offline from the committed notebooks, checked in headless Chromium.

Every chapter is opened from a loopback web server while every request to another host is refused and
recorded: equations must be typeset by the MathJax copy inside the site (no raw ``$$``, no ``\\[`` left
in the text), every figure must load, and following the pages' "next" links from the index must reach
every chapter in order. Needs the ``book`` extra (``make setup``) and Chromium (``make test-browser``).
"""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from test_browser import CHROMIUM_ARGS, find_chromium  # tests/ is on sys.path under pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
MATH_TIMEOUT_MS = 60_000

# In the page: the state of the typesetting, the figures and what is left of the TeX source.
JS_PAGE_STATE = """() => {
    const main = document.querySelector('main') || document.body;
    const math = [...main.querySelectorAll('div.math.notranslate, span.math.notranslate')];
    const typeset = math.filter(m => m.querySelector('.MathJax, .MathJax_Display, .MathJax_SVG, mjx-container'));
    const images = [...main.querySelectorAll('img')].map(img => ({src: img.getAttribute('src'),
        ok: img.complete && img.naturalWidth > 0}));
    const clone = main.cloneNode(true);
    clone.querySelectorAll('script, pre, code, .MathJax_Preview').forEach(e => e.remove());
    const text = clone.innerText;
    return {math: math.length, typeset: typeset.length, images: images, text: text,
            hub: !!(window.MathJax && window.MathJax.Hub)};
}"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    pytest.importorskip("myst_nb", reason="the book extra is not installed (make setup)")
    from psft_edu.course import build_book

    return build_book(REPO / "notebooks", tmp_path_factory.mktemp("book"))


@pytest.fixture(scope="module")
def server(site: Path) -> Iterator[str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:  # noqa: D401 (no access log in the test output)
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_site_has_a_page_per_notebook(site: Path) -> None:
    pages = {p.stem for p in site.glob("*.html")}
    assert {nb.stem for nb in NOTEBOOKS} <= pages
    assert (site / "_static" / "mathjax" / "MathJax.js").exists()
    for nb in NOTEBOOKS:
        html = (site / f"{nb.stem}.html").read_text(encoding="utf-8")
        assert "cdn." not in html and "unpkg.com" not in html and "cdnjs" not in html, f"{nb.stem}: a CDN is referenced"
        assert "colab-setup" not in html and "PSFT_EDU_INSTALL_SOURCE" not in html  # the set-up cell is left out


def test_chapters_render_math_figures_and_navigation(server: str) -> None:
    from playwright.sync_api import sync_playwright

    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no Chromium found (make test-browser installs it)")
    outside: list[str] = []
    errors: list[str] = []

    def route(r) -> None:
        if urlparse(r.request.url).hostname == "127.0.0.1":
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.route("**/*", route)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{server}/index.html", wait_until="load")
            nav = page.eval_on_selector_all("nav a[href$='.html'], .bd-sidebar a[href$='.html']",
                                            "links => links.map(a => a.getAttribute('href'))")
            missing = [nb.stem for nb in NOTEBOOKS if not any(f"{nb.stem}.html" in (h or "") for h in nav)]
            assert not missing, f"the sidebar does not link {missing}"
            visited = []
            for _ in range(len(NOTEBOOKS) + 2):  # follow "next" from the index through every chapter
                following = page.eval_on_selector_all("link[rel=next]", "ls => ls.map(l => l.href)")
                if not following:
                    break
                page.goto(following[0], wait_until="load")
                stem = Path(urlparse(page.url).path).stem
                if stem not in {nb.stem for nb in NOTEBOOKS}:
                    break
                visited.append(stem)
                _check_chapter(page, stem)
            assert visited == [nb.stem for nb in NOTEBOOKS], f"navigation reached {visited}"
        finally:
            browser.close()
    assert not outside, f"the site asked another host for {outside[:5]}"
    assert not errors, errors[:5]


def _check_chapter(page, stem: str) -> None:
    page.wait_for_function(
        "() => window.MathJax && MathJax.Hub && MathJax.Hub.queue && MathJax.Hub.queue.pending === 0 && "
        "document.querySelectorAll('.MathJax_Processing').length === 0 && "
        "[...document.querySelectorAll('div.math.notranslate, span.math.notranslate')]"
        ".every(m => m.querySelector('.MathJax, .MathJax_Display'))",
        timeout=MATH_TIMEOUT_MS,
    )
    state = page.evaluate(JS_PAGE_STATE)
    assert state["math"] > 0 and state["typeset"] == state["math"], (
        f"{stem}: {state['typeset']}/{state['math']} equations typeset"
    )
    assert "$$" not in state["text"], f"{stem}: raw $$ left in the page"
    for left in ("\\[", "\\(", "\\frac", "\\mathrm"):
        assert left not in state["text"], f"{stem}: untypeset TeX {left!r} in the page"
    assert state["images"], f"{stem}: no figures"
    broken = [img["src"] for img in state["images"] if not img["ok"]]
    assert not broken, f"{stem}: figures that did not load: {broken}"
