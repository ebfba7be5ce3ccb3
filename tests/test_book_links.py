"""Links between the book's pages: in the chapters they point at the published book (so they work
in a chapter opened alone in Colab), and every build turns them back into internal links.

* tools/relink_notebooks.py rewrites relative links to book pages in Markdown cells;
* book/_ext/book_links.py maps a published address back to a page of the build
  (``published_target``, a pure function tested here without Sphinx);
* every chapter as committed: no relative link to a page, and every link to the published book
  names a page of the book.

That the built pages of both editions contain no href to the published book is checked in
tests/test_book_browser.py (it builds the book).
"""
from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import relink_notebooks as relink  # noqa: E402

_spec = importlib.util.spec_from_file_location("book_links", ROOT / "book" / "_ext" / "book_links.py")
book_links = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(book_links)

BASE = "https://ddpm-book.github.io/ddpm-book-tf/"
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
PAGES = relink.book_pages()
CHAPTERS = sorted(p for p in PAGES if p.endswith(".ipynb"))
ROOT_DOC = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))["root"]


def _docname(page):
    return re.sub(r"\.(md|ipynb)$", "", page)


def test_baseurl_is_the_published_book():
    """html.baseurl is the GitHub Pages address of the repository, where the deploy job of
    .github/workflows/book.yml publishes the instructor edition."""
    assert relink.load_baseurl() == BASE
    owner, name = re.match(r"^https://github\.com/([^/]+)/([^/]+?)/?$", CONFIG["repository"]["url"]).groups()
    assert BASE == f"https://{owner.lower()}.github.io/{name}/"
    workflow = (ROOT / ".github" / "workflows" / "book.yml").read_text(encoding="utf-8")
    assert "actions/deploy-pages" in workflow
    ext = CONFIG["sphinx"]["local_extensions"]
    assert ext == {"book_links": "book/_ext"} and (ROOT / ext["book_links"] / "book_links.py").is_file()


# ----------------------------------------------------------------------------- the relink tool
def _relink(text, notebook_dir="notebooks"):
    return relink.relink_source(text, notebook_dir, BASE, PAGES)


def test_relative_links_become_published_links():
    text = ("See [Chapter 7](07_sampling.ipynb), [its DDIM part](07_sampling.ipynb#ddim-sampling),\n"
            "the [errata](../book/errata.md#item-19) and ![a figure](<../book/notation.md>).\n"
            "[card]: ../book/model_card.md\n")
    new, count, errors = _relink(text)
    assert errors == [] and count == 5
    assert new == (f"See [Chapter 7]({BASE}notebooks/07_sampling.html), "
                   f"[its DDIM part]({BASE}notebooks/07_sampling.html#ddim-sampling),\n"
                   f"the [errata]({BASE}book/errata.html#item-19) and "
                   f"![a figure](<{BASE}book/notation.html>).\n"
                   f"[card]: {BASE}book/model_card.html\n")
    assert _relink(new) == (new, 0, [])                      # idempotent
    # from a page in book/, the same pages
    assert _relink("[x](../notebooks/05_unet.ipynb)", "book")[0] == f"[x]({BASE}notebooks/05_unet.html)"


def test_other_links_and_code_are_left_alone():
    text = ("[paper](https://arxiv.org/abs/2006.11239), [here](#a-heading), [mail](mailto:a@b.c),\n"
            "[a figure](../book/images/x.png), `[not a link](07_sampling.ipynb)` and\n"
            "```python\nopen('07_sampling.ipynb')  # [x](07_sampling.ipynb)\n```\n"
            "~~~{code-block} markdown\n[x](../book/errata.md)\n~~~\n")
    assert _relink(text) == (text, 0, [])
    # a MyST directive holds Markdown: its links are rewritten, and so are those after it, but not
    # those in a code block inside it
    text = ("````{solution} ex-1\nSee [errata](../book/errata.md).\n```python\nx = '[e](../book/errata.md)'\n"
            "```\n````\nAnd [Chapter 5](05_unet.ipynb).\n:::{note}\n[notation](../book/notation.md)\n:::\n")
    new, count, errors = _relink(text)
    assert (count, errors) == (3, [])
    assert new == text.replace("(../book/errata.md)", f"({BASE}book/errata.html)").replace(
        "(05_unet.ipynb)", f"({BASE}notebooks/05_unet.html)").replace(
        "(../book/notation.md)", f"({BASE}book/notation.html)").replace(
        f"x = '[e]({BASE}book/errata.html)'", "x = '[e](../book/errata.md)'")


def test_links_that_cannot_be_mapped_are_errors():
    text = ("[a](../book/nope.md) [b](../README.md) [c](99_missing.ipynb#x) "
            '<a href="07_sampling.ipynb">d</a> [e](07_sampling.ipynb)')
    new, count, errors = _relink(text)
    assert count == 1 and len(errors) == 4
    assert "book/nope.md does not exist" in errors[0]
    assert "README.md is not a page of the book" in errors[1]
    assert "notebooks/99_missing.ipynb does not exist" in errors[2]
    assert errors[3].startswith("raw-HTML link '07_sampling.ipynb'")


def _nb(markdown, code='print("07_sampling.ipynb")'):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(code)
    cell.outputs = [nbformat.v4.new_output(
        "display_data", data={"text/markdown": "[seven](07_sampling.ipynb)", "text/plain": "x"})]
    nb.cells = [nbformat.v4.new_markdown_cell(markdown), cell]
    return nb


@pytest.fixture
def tiny_repo(tmp_path, monkeypatch):
    """A repository with _config.yml, _toc.yml, two chapters and a page; the tool's ROOT."""
    root = tmp_path.resolve()
    (root / "_config.yml").write_text(f'html:\n  baseurl: "{BASE}"\n', encoding="utf-8")
    (root / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nchapters:\n"
        "  - file: notebooks/01_a\n  - file: notebooks/02_b\n", encoding="utf-8")
    (root / "book").mkdir()
    (root / "book" / "intro.md").write_text("# Intro\n", encoding="utf-8")
    (root / "notebooks").mkdir()
    nbformat.write(_nb("Go to [B](02_b.ipynb#top) and [intro](../book/intro.md)."),
                   str(root / "notebooks" / "01_a.ipynb"))
    nbformat.write(_nb("Back to [A](01_a.ipynb)."), str(root / "notebooks" / "02_b.ipynb"))
    monkeypatch.setattr(relink, "ROOT", root)
    return root


def test_tool_rewrites_markdown_cells_only(tiny_repo, capsys):
    a, b = tiny_repo / "notebooks" / "01_a.ipynb", tiny_repo / "notebooks" / "02_b.ipynb"
    before = nbformat.read(str(a), as_version=4)
    a_bytes, b_bytes = a.read_bytes(), b.read_bytes()
    assert relink.main(["--check", str(a)]) == 1 and a.read_bytes() == a_bytes     # --check writes nothing
    assert relink.main([str(a)]) == 0
    after = nbformat.read(str(a), as_version=4)
    assert after.cells[0].source == (f"Go to [B]({BASE}notebooks/02_b.html#top) and "
                                     f"[intro]({BASE}book/intro.html).")
    assert after.cells[1] == before.cells[1]                  # code and outputs untouched
    assert after.metadata == before.metadata and after.cells[0].id == before.cells[0].id
    assert b.read_bytes() == b_bytes                          # not named: not touched
    written = a.read_bytes()
    assert relink.main([str(a)]) == 0 and a.read_bytes() == written     # idempotent
    assert relink.main(["--check", str(a)]) == 0
    assert relink.main([]) == 0                               # default: every chapter
    assert f"[A]({BASE}notebooks/01_a.html)" in nbformat.read(str(b), as_version=4).cells[0].source
    capsys.readouterr()


def test_tool_fails_loudly_and_writes_nothing(tiny_repo, capsys):
    a, b = tiny_repo / "notebooks" / "01_a.ipynb", tiny_repo / "notebooks" / "02_b.ipynb"
    nbformat.write(_nb("See [gone](../book/gone.md)."), str(b))
    a_bytes, b_bytes = a.read_bytes(), b.read_bytes()
    assert relink.main([str(a), str(b)]) == 1
    err = capsys.readouterr().err
    assert "notebooks/02_b.ipynb, cell 0: link '../book/gone.md': book/gone.md does not exist" in err
    assert a.read_bytes() == a_bytes and b.read_bytes() == b_bytes      # a is fine, but not written
    (tiny_repo / "_config.yml").write_text("html: {}\n", encoding="utf-8")
    assert relink.main([str(a)]) == 2
    assert "html.baseurl in _config.yml must be" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        relink.main([str(tiny_repo / "notebooks" / "03_missing.ipynb")])
    assert exc.value.code == 2
    assert "notebook must be an existing .ipynb file" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the Sphinx extension
@pytest.mark.parametrize("uri, expected", [
    (BASE + "notebooks/07_sampling.html", ("notebooks/07_sampling", "")),
    (BASE + "notebooks/07_sampling.html#ddim-sampling", ("notebooks/07_sampling", "ddim-sampling")),
    (BASE + "book/errata.html", ("book/errata", "")),
    ("http://DDPM-book.github.io/ddpm-book-tf/book/errata.html", ("book/errata", "")),
    (BASE, ("book/intro", "")),
    (BASE.rstrip("/"), ("book/intro", "")),
    (BASE + "index.html#x", ("book/intro", "x")),
    (BASE + "_images/figure.png", (None, "")),                # not a page
    (BASE + "notebooks/", (None, "")),
    (BASE + "search.html?q=ddim", (None, "")),
    ("https://ddpm-book.github.io/ddpm-book-tf-old/book/errata.html", None),
    ("https://ddpm-book.github.io/book/errata.html", None),
    ("https://example.org/ddpm-book-tf/book/errata.html", None),
    ("https://arxiv.org/abs/2006.11239", None),
    ("mailto:someone@example.org", None),
    ("errata.html", None),
])
def test_published_target(uri, expected):
    assert book_links.published_target(uri, BASE, "book/intro") == expected


def test_published_target_without_baseurl():
    assert book_links.published_target(BASE + "book/errata.html", "", "book/intro") is None
    assert (book_links.published_target(BASE + "book/errata.html", BASE.rstrip("/"), "book/intro")
            == ("book/errata", ""))


def test_every_page_round_trips():
    """The tool's address of every page of the book maps back to that page in the build."""
    for page in sorted(PAGES):
        url = relink.published_url("../" + page + "#some-heading", "notebooks", BASE, PAGES)
        assert book_links.published_target(url, BASE, ROOT_DOC) == (_docname(page), "some-heading")


# ----------------------------------------------------------------------------- the chapters
def _markdown_cells(page):
    nb = json.loads((ROOT / page).read_text(encoding="utf-8"))
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "markdown":
            yield i, "".join(cell["source"])


@pytest.mark.parametrize("page", CHAPTERS)
def test_chapter_links_work_in_colab(page):
    """No Markdown cell links to another page by a relative path (it would be dead in Colab)."""
    relative = [f"cell {i}: {target}" for i, text in _markdown_cells(page)
                for _, _, _, target in relink.iter_link_targets(text) if relink.is_document_link(target)]
    assert not relative, (
        f"{page} links to book pages by relative paths, which do not work in a chapter opened in "
        f"Colab; run: python tools/relink_notebooks.py {page}\n  " + "\n  ".join(relative))


@pytest.mark.parametrize("page", CHAPTERS)
def test_chapter_links_to_the_book_name_pages(page):
    """Every link to the published book names a page of the book, as a Markdown link (the build
    cannot turn a raw-HTML link into an internal one)."""
    docnames = {_docname(p) for p in PAGES}
    bad = []
    for i, text in _markdown_cells(page):
        for kind, _, _, target in relink.iter_link_targets(text):
            found = book_links.published_target(target, BASE, ROOT_DOC)
            if found is None:
                continue
            if kind == "html":
                bad.append(f"cell {i}: raw-HTML link {target} (write it as a Markdown link)")
            elif found[0] not in docnames:
                bad.append(f"cell {i}: {target} is not a page of the book")
    assert not bad, f"{page}:\n  " + "\n  ".join(bad)


# ----------------------------------------------------------------------------- the extension in Sphinx
def _sphinx_project(path, index_links):
    """A two-page MyST project that loads book_links; ``index_links`` goes into the root page."""
    (path / "sub").mkdir(parents=True)
    (path / "conf.py").write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT / 'book' / '_ext')!r})\n"
        "extensions = ['myst_parser', 'book_links']\n"
        f"html_baseurl = {BASE!r}\n"
        "myst_heading_anchors = 3\n", encoding="utf-8")
    (path / "index.md").write_text(
        "# Home\n\n```{toctree}\nsub/page\n```\n\n" + index_links + "\n", encoding="utf-8")
    (path / "sub" / "page.md").write_text(
        f"# Page\n\n## A section\n\n[home]({BASE}index.html) [paper](https://arxiv.org/abs/2006.11239)\n",
        encoding="utf-8")


def _sphinx_build(src):
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-q", "-W", "--keep-going", "-n", "-b", "html",
                           str(src), str(src / "_build")], capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


def test_extension_makes_published_links_internal(tmp_path):
    _sphinx_project(tmp_path, f"[a section]({BASE}sub/page.html#a-section), [the page]({BASE}sub/page.html), "
                              f"[home]({BASE})")
    code, log = _sphinx_build(tmp_path)
    assert code == 0, log
    index = (tmp_path / "_build" / "index.html").read_text(encoding="utf-8")
    page = (tmp_path / "_build" / "sub" / "page.html").read_text(encoding="utf-8")
    assert '<a class="reference internal" href="sub/page.html#a-section">' in index
    assert '<a class="reference internal" href="sub/page.html">' in index
    assert '<a class="reference internal" href="../index.html">' in page
    assert 'href="https://arxiv.org/abs/2006.11239"' in page                    # other links kept
    for text in (index, page):      # no link, and no <link rel="canonical">, to the published book
        assert BASE not in text


def test_extension_warns_about_links_to_no_page(tmp_path):
    _sphinx_project(tmp_path, f"[gone]({BASE}book/gone.html), [image]({BASE}_images/x.png), "
                              f"[no anchor]({BASE}sub/page.html#no-such-heading)")
    code, log = _sphinx_build(tmp_path)
    assert code != 0
    assert f"link to the published book names no page of this build: {BASE}book/gone.html" in log
    assert f"link to the published book names no page of this build: {BASE}_images/x.png" in log
    assert "no heading anchor 'no-such-heading' in 'sub/page'" in log
