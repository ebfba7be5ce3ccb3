"""The built book, checked in a real browser.

1. Build the book with Jupyter Book (``-W -n --keep-going``) into a temporary folder, never into
   the repository: the build must have no warnings.
2. Check every chapter page's HTML: its Colab launch link points at that chapter's notebook on
   GitHub, and the hidden Colab set-up cell is not shown.
3. Serve the built site on localhost and open every page of ``_toc.yml`` in headless Chromium,
   with MathJax 3 fetched from npm at test time and served locally (the pages normally load it
   from a CDN; every other host is unreachable for the browser, so the test works offline apart
   from npm). A small script injected into each page waits for MathJax and writes what it sees
   into the DOM, which Chromium's ``--dump-dom`` returns: every ``<img>`` must have loaded
   (``naturalWidth > 0``), every math element must hold rendered MathJax output
   (``mjx-container``), with no MathJax error, every chapter must contain math, and no resource
   may fail to load.

The browser checks need Chromium (or Chrome) and npm. Without them they are skipped, unless
``DDPM_REQUIRE_BROWSER=1`` (set by ``.ci/run``), which turns the skip into a failure. Set
``DDPM_CHROMIUM`` to use a particular browser binary.
"""
from __future__ import annotations

import concurrent.futures
import html
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
REQUIRE_BROWSER = os.environ.get("DDPM_REQUIRE_BROWSER") == "1"
COLAB_PREFIX = "https://colab.research.google.com/github/ddpm-book/ddpm-book-tf/blob/main/"
MATHJAX_CDN = re.compile(r"https://cdn\.jsdelivr\.net/npm/mathjax@3/es5/")
MATHJAX_LOCAL = "/_mathjax/es5/"
RESULT_ID = "ddpm-browser-test"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Known, harmless script errors of the Jupyter Book 1 stack, ignored by the browser check:
# sphinx-thebe 0.3 (connected to "env-before-read-docs", which runs twice) inlines
# `const THEBE_JS_URL = ...` twice in every page; the second copy throws. Thebe (live code) is
# not enabled in this book, so nothing depends on it.
KNOWN_SCRIPT_ERRORS = ("Identifier 'THEBE_JS_URL' has already been declared",)


# ----------------------------------------------------------------------------- the table of contents
def _toc_files():
    """Every ``file:`` entry of _toc.yml, in order (root first), without suffix."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    files = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({k: v for k, v in toc.items() if k != "root"})
    return [re.sub(r"\.(md|ipynb)$", "", f) for f in files]


PAGES = _toc_files()
CHAPTERS = [p for p in PAGES if p.startswith("notebooks/")]


def test_toc_matches_the_notebooks():
    """Every chapter in _toc.yml exists as a notebook, and every notebook is in _toc.yml."""
    missing = [p for p in PAGES if not any((ROOT / (p + s)).exists() for s in (".md", ".ipynb"))]
    assert not missing, f"_toc.yml lists files that do not exist: {missing}"
    for p in CHAPTERS:
        assert (ROOT / (p + ".ipynb")).exists(), f"chapter {p} must be a notebook (.ipynb)"
    on_disk = sorted(f"notebooks/{p.stem}" for p in (ROOT / "notebooks").glob("*.ipynb"))
    orphans = [p for p in on_disk if p not in CHAPTERS]
    assert not orphans, f"notebooks missing from _toc.yml (the book would not show them): {orphans}"


# ----------------------------------------------------------------------------- the build
def _jupyter_book():
    exe = Path(sys.executable).with_name("jupyter-book")
    if exe.exists():
        return str(exe)
    found = shutil.which("jupyter-book")
    if not found:
        pytest.fail("jupyter-book is not installed (pip install -r requirements.txt)")
    return found


@pytest.fixture(scope="module")
def built_book(tmp_path_factory):
    """Build the book once, outside the repository; returns (html_dir, returncode, log)."""
    out = tmp_path_factory.mktemp("book")
    cmd = [_jupyter_book(), "build", str(ROOT), "--path-output", str(out), "-W", "-n", "--keep-going"]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    log = proc.stdout + proc.stderr
    html_dir = out / "_build" / "html"
    if not (html_dir / "index.html").exists():
        pytest.fail(f"jupyter-book build produced no HTML (exit code {proc.returncode}):\n{log[-6000:]}")
    return html_dir, proc.returncode, log


def test_book_builds_without_warnings(built_book):
    _, returncode, log = built_book
    warnings = [line for line in log.splitlines() if re.search(r"WARNING|ERROR", line)]
    assert returncode == 0 and not warnings, (
        "jupyter-book build -W -n --keep-going failed or warned:\n" + "\n".join(warnings[:50])
        + ("" if warnings else "\n" + log[-4000:]))


@pytest.mark.parametrize("page", CHAPTERS)
def test_chapter_colab_link(built_book, page):
    """The rocket button opens this chapter's notebook from GitHub in Colab; the set-up cell is hidden."""
    html_dir, _, _ = built_book
    text = (html_dir / (page + ".html")).read_text(encoding="utf-8")
    expected = COLAB_PREFIX + page + ".ipynb"
    colab = set(re.findall(r'href="(https://colab\.research\.google\.com/[^"]*)"', text))
    assert colab == {expected}, f"{page}: Colab links {sorted(colab)}, expected exactly {expected}"
    assert "google.colab" not in text, (
        f"{page}: the Colab set-up cell is visible; tag it 'remove-cell' in the notebook")


def test_titles_have_no_math(built_book):
    """Page titles appear in the sidebar of every page and in the browser's tab, where math
    is not rendered (MathJax is only loaded on pages with equations): keep H1 titles plain text."""
    html_dir, _, _ = built_book
    text = (html_dir / (PAGES[0] + ".html")).read_text(encoding="utf-8")
    nav = re.search(r'<nav class="[^"]*bd-docs-nav[^"]*".*?</nav>', text, re.S)
    assert nav, "could not find the sidebar navigation in the built root page"
    titles = re.findall(r'<a class="reference internal[^>]*>(.*?)</a>', nav.group(0), re.S)
    with_math = [re.sub(r"<[^>]+>", "", t) for t in titles if 'class="math' in t]
    assert not with_math, (
        "these page titles contain math, which shows as raw TeX in the sidebar and the browser "
        f"tab; write the title in words and put the formula in the text: {with_math}")


# ----------------------------------------------------------------------------- the browser
def _need(what):
    if REQUIRE_BROWSER:
        pytest.fail(f"{what} (DDPM_REQUIRE_BROWSER=1 requires the browser test to run)")
    pytest.skip(what)


def _find_chromium():
    explicit = os.environ.get("DDPM_CHROMIUM")
    if explicit:
        return shutil.which(explicit)
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


# Injected first into <head>: record resources that fail to load and uncaught script errors.
HEAD_PROBE = """<script>
window.__ddpmErrors = [];
window.addEventListener("error", function (e) {
  var t = e.target;
  if (t && t !== window && (t.src || t.href)) {
    window.__ddpmErrors.push("failed to load " + (t.src || t.href));
  } else {
    window.__ddpmErrors.push("script error: " + e.message);
  }
}, true);
</script>
"""

# Injected at the end of <body>: once the page and MathJax are done, write the findings into the DOM.
BODY_PROBE = """<script>
(function () {
  function report(problem) {
    var maths = Array.prototype.slice.call(document.querySelectorAll(".math"));
    var result = {
      problem: problem || null,
      errors: window.__ddpmErrors || [],
      images: Array.prototype.map.call(document.images, function (img) {
        return {src: (img.currentSrc || img.src).slice(0, 200), complete: img.complete,
                width: img.naturalWidth};
      }),
      mjx: document.querySelectorAll("mjx-container").length,
      mjx_errors: Array.prototype.map.call(
        document.querySelectorAll("mjx-merror, [data-mjx-error]"),
        function (e) { return e.getAttribute("data-mjx-error") || e.textContent; }),
      math: maths.length,
      math_unrendered: maths.filter(function (e) { return !e.querySelector("mjx-container"); })
        .map(function (e) { return e.textContent.slice(0, 120); }),
      h1: Array.prototype.map.call(document.querySelectorAll("article h1, main h1"),
                                   function (h) { return h.textContent.trim(); })
    };
    var pre = document.createElement("pre");
    pre.id = "%s";
    pre.textContent = JSON.stringify(result);
    document.body.appendChild(pre);
  }
  window.addEventListener("load", function () {
    var mj = window.MathJax;
    if (!mj || !mj.startup || !mj.startup.promise) {
      report(document.querySelector(".math") ? "MathJax did not load" : null);
      return;
    }
    mj.startup.promise.then(function () { report(null); },
                            function (e) { report("MathJax failed: " + e); });
  });
})();
</script>
""" % RESULT_ID


class _Handler(http.server.SimpleHTTPRequestHandler):
    failures: list = []

    def log_message(self, *args):      # quiet
        pass

    def send_error(self, code, message=None, explain=None):
        if self.path != "/favicon.ico":
            type(self).failures.append(f"{code} {self.path}")
        super().send_error(code, message, explain)


@pytest.fixture(scope="module")
def served_book(built_book, tmp_path_factory):
    """The built book with a local MathJax and the probes, served on 127.0.0.1."""
    chromium = _find_chromium()
    if not chromium:
        _need("Chromium is not installed (e.g. apt-get install chromium)")
    npm = shutil.which("npm")
    if not npm:
        _need("npm is not installed; it fetches MathJax for the browser test")

    html_dir, _, _ = built_book
    work = tmp_path_factory.mktemp("mathjax")
    proc = subprocess.run([npm, "pack", "mathjax@3", "--silent", "--pack-destination", str(work)],
                          capture_output=True, text=True, timeout=300, cwd=work)
    tarballs = list(work.glob("mathjax-3*.tgz"))
    if proc.returncode != 0 or not tarballs:
        _need(f"npm pack mathjax@3 failed: {(proc.stderr or proc.stdout)[-1000:]}")
    target = html_dir / "_mathjax"
    with tarfile.open(tarballs[0]) as tar:
        members = [m for m in tar.getmembers()
                   if m.name.startswith("package/es5/") and (m.isfile() or m.isdir())]
        for m in members:
            m.name = m.name[len("package/"):]
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(target, members=members, **safe)
    assert (target / "es5" / "tex-mml-chtml.js").exists()

    loads_mathjax = []
    for page in PAGES:
        path = html_dir / (page + ".html")
        text = path.read_text(encoding="utf-8")
        if MATHJAX_CDN.search(text):
            loads_mathjax.append(page)
        text = MATHJAX_CDN.sub(MATHJAX_LOCAL, text)
        text = text.replace("<head>", "<head>\n" + HEAD_PROBE, 1)
        text = text.replace("</body>", BODY_PROBE + "</body>", 1)
        path.write_text(text, encoding="utf-8")
    assert set(CHAPTERS) <= set(loads_mathjax), (
        f"chapters {sorted(set(CHAPTERS) - set(loads_mathjax))} do not load MathJax 3 from "
        f"{MATHJAX_CDN.pattern}; if the book's MathJax URL changed, update MATHJAX_CDN in this test")

    handler = type("Handler", (_Handler,), {"failures": []})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a, **k: handler(*a, directory=str(html_dir), **k))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield {"url": f"http://127.0.0.1:{server.server_address[1]}", "chromium": chromium,
               "failures": handler.failures}
    finally:
        server.shutdown()
        server.server_close()


def _open_in_chromium(chromium, url):
    with tempfile.TemporaryDirectory() as profile:
        cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
               # only the local server is reachable: the page must not need the network
               "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
               "--window-size=1280,4000", "--virtual-time-budget=20000", "--dump-dom", url]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    match = re.search(r'<pre id="%s"[^>]*>(.*?)</pre>' % RESULT_ID, proc.stdout, re.S)
    if not match:
        raise AssertionError(
            f"{url}: the page did not finish loading in Chromium (exit code {proc.returncode}).\n"
            f"stderr: {proc.stderr[-2000:]}\nDOM: {proc.stdout[-1000:]}")
    return json.loads(html.unescape(match.group(1)))


@pytest.fixture(scope="module")
def browser_results(served_book):
    """Open every page in Chromium, a few at a time; page -> findings (or the error raised)."""
    def visit(page):
        try:
            return _open_in_chromium(served_book["chromium"], f"{served_book['url']}/{page}.html")
        except Exception as exc:        # reported by the page's own test
            return exc

    workers = max(1, min(4, os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return dict(zip(PAGES, pool.map(visit, PAGES)))


@pytest.mark.parametrize("page", PAGES)
def test_page_in_browser(browser_results, page):
    result = browser_results[page]
    if isinstance(result, Exception):
        raise result
    problems = []
    if result["problem"]:
        problems.append(result["problem"])
    problems += [e for e in result["errors"] if not any(k in e for k in KNOWN_SCRIPT_ERRORS)]
    problems += [f"image did not load: {img['src']}" for img in result["images"]
                 if not (img["complete"] and img["width"] > 0)]
    problems += [f"MathJax error: {e}" for e in result["mjx_errors"]]
    problems += [f"math not rendered: {m!r}" for m in result["math_unrendered"]]
    if page in CHAPTERS and result["mjx"] == 0:
        problems.append("no rendered math (mjx-container) on a chapter page")
    if not result["h1"]:
        problems.append("no H1 title")
    assert not problems, f"{page}:\n  " + "\n  ".join(problems)


def test_no_missing_files(served_book, browser_results):
    """No page asked the server for a file the build did not produce."""
    assert not served_book["failures"], (
        "requests that failed while loading the pages: " + ", ".join(sorted(set(served_book["failures"]))))
