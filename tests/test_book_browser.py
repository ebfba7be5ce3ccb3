"""The built book, checked in a real browser.

1. Build the book with Jupyter Book (``-W -n --keep-going``) into a temporary folder, never into
   the repository: the build must have no warnings. Both editions are built: the instructor
   edition (``_config.yml``, every exercise with its solution) and the student edition
   (``_config_student.yml``: every exercise, no solution, no link to the notebooks).
2. Check every chapter page's HTML: its Colab launch link points at that chapter's notebook on
   GitHub, and the hidden Colab set-up cell is not shown.
3. Serve the built site on localhost and open every page of ``_toc.yml`` in headless Chromium,
   with MathJax 3 fetched from npm at test time and served locally (the pages normally load it
   from a CDN; every other host is unreachable for the browser, so the test works offline apart
   from npm). A small script injected into each page waits for MathJax and writes what it sees
   into the DOM, which Chromium's ``--dump-dom`` returns: every ``<img>`` must have loaded
   (``naturalWidth > 0``), every math element must hold rendered MathJax output
   (``mjx-container``), with no MathJax error, every chapter must contain math, and no resource
   may fail to load. Every chapter shows all its exercises, and its solutions in the instructor
   edition only (the student edition's chapter pages are opened too).

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


def _build(out, config=None):
    """Build the book into ``out``; returns (html_dir, returncode, log)."""
    cmd = [_jupyter_book(), "build", str(ROOT), "--path-output", str(out), "-W", "-n", "--keep-going"]
    if config:
        cmd += ["--config", str(ROOT / config)]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    log = proc.stdout + proc.stderr
    html_dir = out / "_build" / "html"
    if not (html_dir / "index.html").exists():
        pytest.fail(f"jupyter-book build produced no HTML (exit code {proc.returncode}):\n{log[-6000:]}")
    return html_dir, proc.returncode, log


@pytest.fixture(scope="module")
def built_book(tmp_path_factory):
    """The instructor edition, built once outside the repository; (html_dir, returncode, log)."""
    return _build(tmp_path_factory.mktemp("book"))


@pytest.fixture(scope="module")
def built_student(tmp_path_factory):
    """The student edition (_config_student.yml), built once outside the repository."""
    return _build(tmp_path_factory.mktemp("student"), "_config_student.yml")


def _assert_no_warnings(built):
    _, returncode, log = built
    warnings = [line for line in log.splitlines() if re.search(r"WARNING|ERROR", line)]
    assert returncode == 0 and not warnings, (
        "jupyter-book build -W -n --keep-going failed or warned:\n" + "\n".join(warnings[:50])
        + ("" if warnings else "\n" + log[-4000:]))


def test_book_builds_without_warnings(built_book):
    _assert_no_warnings(built_book)


def test_student_edition_builds_without_warnings(built_student):
    _assert_no_warnings(built_student)


def test_student_config_is_the_book_config_without_solutions():
    """_config_student.yml is _config.yml plus the student-edition settings, nothing else."""
    book = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    student = yaml.safe_load((ROOT / "_config_student.yml").read_text(encoding="utf-8"))
    assert student["sphinx"]["config"].get("hide_solutions") is True
    expected = json.loads(json.dumps(book))
    expected["title"] = book["title"] + " (student edition)"
    expected["launch_buttons"]["colab_url"] = ""
    expected["sphinx"]["recursive_update"] = True
    expected["sphinx"]["config"].update(
        hide_solutions=True, html_copy_source=False,
        html_theme_options={"use_download_button": False})
    assert student == expected, (
        "_config_student.yml must equal _config.yml apart from the student-edition settings; "
        "copy the change you made to _config.yml into _config_student.yml")


# Where the instructor edition is published. The chapters link to other pages through it (so the
# links work in Colab); every build must turn those links into internal ones (book/_ext/book_links.py).
BASEURL = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["html"]["baseurl"]


def _hrefs_to_the_published_book(html_dir):
    """'page: href' for every href/src of a built page that points into BASEURL (http or https)."""
    site = re.escape(re.sub(r"^https?://", "", BASEURL).rstrip("/"))
    pattern = re.compile(r"""\b(?:href|src)\s*=\s*["']?(https?://%s(?=[/#?"'\s>]|$)[^"'\s>]*)""" % site,
                         re.IGNORECASE)
    found = []
    for path in sorted(html_dir.rglob("*.html")):
        text = path.read_text(encoding="utf-8", errors="replace")
        found += [f"{path.relative_to(html_dir).as_posix()}: {m.group(1)}" for m in pattern.finditer(text)]
    return found


def test_no_page_links_to_the_published_book(built_book, built_student):
    """Neither edition links to the published (instructor) book: its links to BASEURL are internal
    links of the build, and no page names BASEURL as its canonical address. The student edition
    would otherwise send students to the pages with the solutions."""
    assert re.match(r"^https://[^/]+/", BASEURL), f"html.baseurl in _config.yml: {BASEURL!r}"
    for edition, built in (("instructor", built_book), ("student", built_student)):
        found = _hrefs_to_the_published_book(built[0])
        assert not found, (f"the {edition} edition links to the published book {BASEURL}:\n  "
                           + "\n  ".join(found[:30]))


def _directives(page, name):
    """How many ``{name}`` directives (exercise, solution) the chapter's markdown cells hold."""
    nb = json.loads((ROOT / (page + ".ipynb")).read_text(encoding="utf-8"))
    return sum(len(re.findall(r"^`{3,}\{%s\}" % name, "".join(c["source"]), re.M))
               for c in nb["cells"] if c["cell_type"] == "markdown")


EXERCISES = {page: _directives(page, "exercise") for page in CHAPTERS}
SOLUTIONS = {page: _directives(page, "solution") for page in CHAPTERS}


def _plain(fragment):
    """Prose of an HTML fragment: code blocks and tags removed, whitespace collapsed."""
    fragment = re.sub(r"<pre\b.*?</pre>", " ", fragment, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def _solution_texts(text):
    """The text of each rendered solution (a div of class "solution") of one page."""
    found = []
    for m in re.finditer(r'<div class="solution[^"]*"[^>]*>', text):
        depth, pos = 1, m.end()
        for tag in re.finditer(r"<(/?)div\b[^>]*>", text[pos:]):
            depth += -1 if tag.group(1) else 1
            if depth == 0:
                found.append(_plain(text[pos:pos + tag.start()]))
                break
    return found


@pytest.mark.parametrize("page", CHAPTERS)
def test_exercises_in_both_editions(built_book, built_student, page):
    """Every exercise is in both editions; every solution in the instructor edition and its text
    nowhere in the student edition (page, search index, downloadable sources)."""
    assert EXERCISES[page] >= 1 and SOLUTIONS[page] == EXERCISES[page], (
        f"{page}: {EXERCISES[page]} exercise and {SOLUTIONS[page]} solution directives; every "
        "exercise needs one solution")
    teacher = (built_book[0] / (page + ".html")).read_text(encoding="utf-8")
    student_dir = built_student[0]
    student = (student_dir / (page + ".html")).read_text(encoding="utf-8")
    for edition, text in (("instructor", teacher), ("student", student)):
        n = len(re.findall(r'<div class="exercise[^"]*"', text))
        assert n == EXERCISES[page], f"{page}: the {edition} edition shows {n} of {EXERCISES[page]} exercises"
    solutions = _solution_texts(teacher)
    assert len(solutions) == SOLUTIONS[page] and all(len(t) > 40 for t in solutions), (
        f"{page}: the instructor edition shows {len(solutions)} of {SOLUTIONS[page]} solutions")
    assert not _solution_texts(student), f"{page}: the student edition shows a solution"
    searchable = _plain(student) + " " + _plain((student_dir / "searchindex.js").read_text(encoding="utf-8"))
    for sol in solutions:
        body = sol.split(")", 1)[-1].strip()          # without the "Solution to Exercise (...)" title
        words = body.split()
        for k in range(0, max(1, len(words) - 16), 8):  # 16-word windows of the solution text
            window = " ".join(words[k:k + 16])
            assert window not in searchable, f"{page}: solution text in the student edition: {window!r}"
    assert not (student_dir / "_sources").exists(), "the student edition ships the notebooks (_sources)"
    assert not re.search(r'href="[^"]*(colab\.research\.google\.com|\.ipynb)', student), (
        f"{page}: the student edition links to the notebook, which contains the solutions")


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


@pytest.mark.parametrize("page", CHAPTERS)
def test_nbval_markers_are_tags_not_comments(built_book, page):
    """nbval's output checks are cell tags ("nbval-check-output"), which the page does not show;
    a "# NBVAL_..." comment in the code would be printed on the published page."""
    nb = json.loads((ROOT / (page + ".ipynb")).read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    comments = [i for i, c in enumerate(code) if "NBVAL_" in "".join(c["source"])]
    assert not comments, (f"{page}: code cells {comments} carry an nbval comment; use the cell tag "
                          "'nbval-check-output' instead")
    html_dir, _, _ = built_book
    page_html = (html_dir / (page + ".html")).read_text(encoding="utf-8")
    # The tag itself becomes a CSS class (tag_nbval-check-output), which no reader sees; the text is
    # what must be free of markers.
    shown = re.sub(r"<[^>]*>", " ", page_html)
    assert "NBVAL" not in shown.upper(), f"{page}: the built page shows an nbval marker"
    assert "tag_nbval-check-output" in page_html, f"{page}: no tagged cell reached the page"


def test_some_outputs_are_checked_by_nbval():
    """The chapters' exact-output checks survive: every chapter tags at least one cell."""
    for page in CHAPTERS:
        nb = json.loads((ROOT / (page + ".ipynb")).read_text(encoding="utf-8"))
        tagged = sum("nbval-check-output" in c.get("metadata", {}).get("tags", []) for c in nb["cells"])
        assert tagged >= 1, f"{page}: no cell is tagged 'nbval-check-output'"


def _markdown_output_tables(page):
    """How many Markdown tables the notebook's stored outputs display (display(Markdown(...)))."""
    nb = json.loads((ROOT / (page + ".ipynb")).read_text(encoding="utf-8"))
    count = 0
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            md = out.get("data", {}).get("text/markdown")
            if md:
                md = "".join(md) if isinstance(md, list) else md
                count += len(re.findall(r"^\|?\s*:?-{3,}:?\s*\|", md, re.M))
    return count


@pytest.mark.parametrize("page", CHAPTERS)
def test_displayed_markdown_tables_are_html_tables(built_book, page):
    """A table a cell displays as Markdown must become an HTML table (myst-nb parses displayed
    Markdown as CommonMark, which has no tables, unless nb_render_markdown_format is myst)."""
    html_dir, _, _ = built_book
    text = (html_dir / (page + ".html")).read_text(encoding="utf-8")
    outputs = re.findall(r'<div class="cell_output[^"]*">(.*?)</div>\s*</div>', text, re.S)
    tables = sum(o.count("<table") for o in outputs)
    expected = _markdown_output_tables(page)
    assert tables >= expected, (
        f"{page}: the notebook displays {expected} Markdown table(s) but the page shows {tables} "
        "HTML table(s) in cell outputs; set nb_render_markdown_format: myst in _config.yml")
    pipes = [o for o in outputs if re.search(r"\|\s*:?-{3,}:?\s*\|", _plain(o))]
    assert not pipes, f"{page}: a cell output shows a Markdown table as text: {_plain(pipes[0])[:200]}"


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
                                   function (h) { return h.textContent.trim(); }),
      exercises: document.querySelectorAll("div.exercise").length,
      solutions: document.querySelectorAll("div.solution").length
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
def mathjax_es5(tmp_path_factory):
    """MathJax 3's es5 folder, fetched once from npm; (chromium, path)."""
    chromium = _find_chromium()
    if not chromium:
        _need("Chromium is not installed (e.g. apt-get install chromium)")
    npm = shutil.which("npm")
    if not npm:
        _need("npm is not installed; it fetches MathJax for the browser test")
    work = tmp_path_factory.mktemp("mathjax")
    proc = subprocess.run([npm, "pack", "mathjax@3", "--silent", "--pack-destination", str(work)],
                          capture_output=True, text=True, timeout=300, cwd=work)
    tarballs = list(work.glob("mathjax-3*.tgz"))
    if proc.returncode != 0 or not tarballs:
        _need(f"npm pack mathjax@3 failed: {(proc.stderr or proc.stdout)[-1000:]}")
    with tarfile.open(tarballs[0]) as tar:
        members = [m for m in tar.getmembers()
                   if m.name.startswith("package/es5/") and (m.isfile() or m.isdir())]
        for m in members:
            m.name = m.name[len("package/"):]
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(work / "mathjax", members=members, **safe)
    assert (work / "mathjax" / "es5" / "tex-mml-chtml.js").exists()
    return chromium, work / "mathjax" / "es5"


def _serve(html_dir, pages, mathjax_es5):
    """Serve a built book with a local MathJax and the probes on 127.0.0.1 (a generator)."""
    chromium, es5 = mathjax_es5
    shutil.copytree(es5, html_dir / "_mathjax" / "es5")
    loads_mathjax = []
    for page in pages:
        path = html_dir / (page + ".html")
        text = path.read_text(encoding="utf-8")
        if MATHJAX_CDN.search(text):
            loads_mathjax.append(page)
        text = MATHJAX_CDN.sub(MATHJAX_LOCAL, text)
        text = text.replace("<head>", "<head>\n" + HEAD_PROBE, 1)
        text = text.replace("</body>", BODY_PROBE + "</body>", 1)
        path.write_text(text, encoding="utf-8")
    assert set(CHAPTERS) & set(pages) <= set(loads_mathjax), (
        f"chapters {sorted(set(CHAPTERS) & set(pages) - set(loads_mathjax))} do not load MathJax 3 "
        f"from {MATHJAX_CDN.pattern}; if the book's MathJax URL changed, update MATHJAX_CDN in this test")

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


@pytest.fixture(scope="module")
def served_book(built_book, mathjax_es5):
    """The instructor edition, every page, served with a local MathJax and the probes."""
    yield from _serve(built_book[0], PAGES, mathjax_es5)


@pytest.fixture(scope="module")
def served_student(built_student, mathjax_es5):
    """The student edition's chapter pages, served with a local MathJax and the probes."""
    yield from _serve(built_student[0], CHAPTERS, mathjax_es5)


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


def _visit_all(served, pages):
    """Open pages in Chromium, a few at a time; page -> findings (or the error raised)."""
    def visit(page):
        try:
            return _open_in_chromium(served["chromium"], f"{served['url']}/{page}.html")
        except Exception as exc:        # reported by the page's own test
            return exc

    workers = max(1, min(4, os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return dict(zip(pages, pool.map(visit, pages)))


@pytest.fixture(scope="module")
def browser_results(served_book):
    return _visit_all(served_book, PAGES)


@pytest.fixture(scope="module")
def student_results(served_student):
    return _visit_all(served_student, CHAPTERS)


def _page_problems(result, page, solutions):
    """What is wrong with one page as Chromium saw it; ``solutions``: how many it must show."""
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
    n_ex = EXERCISES.get(page, 0)
    if result["exercises"] != n_ex:
        problems.append(f"{result['exercises']} exercises shown, expected {n_ex}")
    if result["solutions"] != solutions:
        problems.append(f"{result['solutions']} solutions shown, expected {solutions}")
    return problems


@pytest.mark.parametrize("page", PAGES)
def test_page_in_browser(browser_results, page):
    problems = _page_problems(browser_results[page], page, SOLUTIONS.get(page, 0))
    assert not problems, f"{page}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("page", CHAPTERS)
def test_student_page_in_browser(student_results, page):
    """The student edition's chapter: math renders, every exercise is there, no solution."""
    problems = _page_problems(student_results[page], page, 0)
    assert not problems, f"student edition, {page}:\n  " + "\n  ".join(problems)


def test_no_missing_files(served_book, browser_results):
    """No page asked the server for a file the build did not produce."""
    assert not served_book["failures"], (
        "requests that failed while loading the pages: " + ", ".join(sorted(set(served_book["failures"]))))


def test_student_no_missing_files(served_student, student_results):
    """No student-edition chapter asked the server for a file the build did not produce."""
    assert not served_student["failures"], (
        "requests that failed while loading the pages: " + ", ".join(sorted(set(served_student["failures"]))))
