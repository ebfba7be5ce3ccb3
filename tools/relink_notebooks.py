"""Point the chapters' links to other book pages at the published book, so they work in Colab.

    python tools/relink_notebooks.py [notebooks/07_sampling.ipynb ...] [--check]

A chapter opened alone (in Google Colab, or on GitHub) cannot follow a relative link such as
``[errata](../book/errata.md)`` or ``[Chapter 7](07_sampling.ipynb#a-heading)``. This tool rewrites
every such link in the notebooks' MARKDOWN cells into a link to the published book:

    07_sampling.ipynb#a         ->  {baseurl}notebooks/07_sampling.html#a
    ../book/errata.md           ->  {baseurl}book/errata.html

with ``baseurl`` read from ``html: baseurl:`` in ``_config.yml``. The built book turns these links
back into internal links of the edition being built (the local Sphinx extension
``book/_ext/book_links.py``), so the student edition never links to the published instructor pages.

Only Markdown links (inline ``[text](target)`` and reference definitions ``[label]: target``) to
pages of the book (files listed in ``_toc.yml``) are rewritten; code cells, outputs, code spans and
code blocks are left alone, and a notebook in which nothing changes is not written. Running the tool
again changes nothing. A relative link to a missing file or to a file that is not a page of the book,
and a raw-HTML link (``<a href="...">``) to a page, are errors: the tool reports every one (one line
each) and writes no notebook. Without arguments it relinks every chapter of ``_toc.yml``.
``--check`` writes nothing and exits with status 1 if a notebook would change.
"""
from __future__ import annotations

import argparse
import posixpath
import re
import sys
from pathlib import Path
from urllib.parse import unquote

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOC_SUFFIXES = (".ipynb", ".md")

# A fenced code block's opening line: its fence and info string. A MyST directive
# (```{exercise}) holds Markdown, whose links count; a plain or {code...} fence holds code.
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*(.*)$")
CODE_DIRECTIVES = re.compile(r"^\{(code|code-block|code-cell|sourcecode|literalinclude)\}")
# What counts as a link target on one line: a code span (skipped), an inline link or image
# target ``](target`` (optionally in <...>), a reference definition ``[label]: target``, and
# raw-HTML href/src attributes.
LINK = re.compile(
    r"(?P<code>(?P<ticks>`+).+?(?P=ticks))"
    r"|\]\(\s*(?:<(?P<angle>[^>\n]*)>|(?P<inline>[^\s)<>]+))"
    r"|^(?P<refdef> {0,3}\[[^\]\n]+\]:[ \t]*)(?:<(?P<refangle>[^>\n]*)>|(?P<ref>\S+))"
    r"|\b(?:href|src)\s*=\s*(?P<quote>[\"'])(?P<html>.*?)(?P=quote)",
    re.IGNORECASE)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


class LinkError(ValueError):
    """A link the tool cannot map; its message is one line."""


def load_baseurl(root=None):
    """``html.baseurl`` of ``_config.yml``: the published book's address, ending in '/'."""
    config = yaml.safe_load((Path(root or ROOT) / "_config.yml").read_text(encoding="utf-8"))
    baseurl = ((config or {}).get("html") or {}).get("baseurl")
    if not isinstance(baseurl, str) or not re.match(r"^https?://[^/\s]+/(\S*/)?$", baseurl):
        raise LinkError(f"html.baseurl in _config.yml must be the published book's URL ending in '/'; "
                        f"got {baseurl!r}.")
    return baseurl


def book_pages(root=None):
    """The pages of the book: the files of _toc.yml, as paths relative to ``root`` with suffix."""
    root = Path(root or ROOT)
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    names = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("root", "file") and isinstance(value, str):
                    names.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    pages = set()
    for name in names:
        stem = re.sub(r"\.(md|ipynb)$", "", name)
        pages.update(stem + s for s in DOC_SUFFIXES if (root / (stem + s)).is_file())
    return pages


def iter_link_targets(text):
    """Every link target of a Markdown cell outside code: ``(kind, start, end, target)``.

    ``kind`` is "markdown" (inline link, image or reference definition) or "html" (a raw-HTML
    href/src attribute); ``text[start:end] == target``.
    """
    fence = None            # the fence of the code block we are in, if any
    directives = []         # the fences of the MyST directives we are in (their content is Markdown)
    offset = 0
    for line in text.splitlines(keepends=True):
        opening = FENCE.match(line.rstrip("\r\n"))
        here = offset
        offset += len(line)
        if fence is not None:
            # inside a code block: only its closing fence (same character, at least as long) counts
            if opening and _closes(opening, fence):
                fence = None
            continue
        if opening:
            if directives and _closes(opening, directives[-1]):
                directives.pop()
            elif opening.group(2).startswith("{") and not CODE_DIRECTIVES.match(opening.group(2)):
                directives.append(opening.group(1))
            else:
                fence = opening.group(1)
            continue
        for m in LINK.finditer(line):
            if m.group("code"):
                continue
            for group, kind in (("angle", "markdown"), ("inline", "markdown"), ("refangle", "markdown"),
                                ("ref", "markdown"), ("html", "html")):
                if m.group(group) is not None:
                    yield kind, here + m.start(group), here + m.end(group), m.group(group)
                    break


def _closes(line_match, fence):
    """Whether a fence line (a FENCE match) closes a block opened by ``fence``."""
    marker, info = line_match.group(1), line_match.group(2)
    return marker[0] == fence[0] and len(marker) >= len(fence) and not info.strip()


def _split(target):
    path, _, anchor = target.partition("#")
    return path, anchor


def is_document_link(target):
    """A relative link (no scheme, not site-absolute) to a .ipynb or .md file."""
    path, _ = _split(target)
    return (bool(path) and not SCHEME.match(path) and not path.startswith(("/", "//"))
            and unquote(path).lower().endswith(DOC_SUFFIXES))


def published_url(target, notebook_dir, baseurl, pages, root=None):
    """The published address of a relative link ``target`` written in a notebook of ``notebook_dir``
    (a folder relative to the repository root, e.g. "notebooks"). Raises LinkError when the target
    is not a page of the book."""
    path, anchor = _split(target)
    resolved = posixpath.normpath(posixpath.join(notebook_dir, unquote(path)))
    if resolved.startswith("../") or resolved == "..":
        raise LinkError(f"link {target!r} points outside the repository")
    if resolved not in pages:
        if (Path(root or ROOT) / resolved).is_file():
            raise LinkError(f"link {target!r}: {resolved} is not a page of the book (not in _toc.yml)")
        raise LinkError(f"link {target!r}: {resolved} does not exist")
    url = baseurl + re.sub(r"\.(md|ipynb)$", ".html", resolved)
    return url + ("#" + anchor if anchor else "")


def relink_source(text, notebook_dir, baseurl, pages, root=None):
    """(new text, number of links rewritten, [error messages]) for one Markdown cell."""
    pieces, last, count, errors = [], 0, 0, []
    for kind, start, end, target in iter_link_targets(text):
        if not is_document_link(target):
            continue
        if kind == "html":
            errors.append(f"raw-HTML link {target!r}: write it as a Markdown link [text]({target})")
            continue
        try:
            url = published_url(target, notebook_dir, baseurl, pages, root)
        except LinkError as exc:
            errors.append(str(exc))
            continue
        pieces += [text[last:start], url]
        last = end
        count += 1
    pieces.append(text[last:])
    return "".join(pieces), count, errors


def relink_notebook(nb, notebook_dir, baseurl, pages, root=None):
    """Rewrite the links of a notebook's Markdown cells in place; (links rewritten, [errors])."""
    total, errors = 0, []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        new, count, errs = relink_source(cell.source, notebook_dir, baseurl, pages, root)
        errors += [f"cell {i}: {e}" for e in errs]
        if count:
            cell.source = new
            total += count
    return total, errors


def _notebook_arg(value):
    path = Path(value)
    if not path.is_file() or path.suffix != ".ipynb":
        raise argparse.ArgumentTypeError(f"notebook must be an existing .ipynb file; got {value!r}")
    try:
        path.resolve().relative_to(ROOT)
    except ValueError:
        raise argparse.ArgumentTypeError(f"notebook must be inside this repository; got {value!r}") from None
    return path.resolve()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=_notebook_arg,
                        help="notebooks to relink (default: every chapter of _toc.yml)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a notebook would change")
    args = parser.parse_args(argv)
    try:
        baseurl = load_baseurl()
    except LinkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    pages = book_pages()
    paths = args.notebooks or sorted(ROOT / p for p in pages if p.endswith(".ipynb"))

    changed, errors = [], []
    for path in paths:
        rel = path.relative_to(ROOT).as_posix()
        try:
            nb = nbformat.reads(path.read_text(encoding="utf-8"), as_version=nbformat.NO_CONVERT)
        except Exception as exc:        # not JSON, not a notebook: one line, nothing written
            errors.append(f"{rel}: not a readable notebook ({type(exc).__name__})")
            continue
        count, errs = relink_notebook(nb, posixpath.dirname(rel), baseurl, pages, ROOT)
        errors += [f"{rel}, {e}" for e in errs]
        if count:
            changed.append((path, rel, nb, count))
    if errors:
        for e in errors:
            print(f"error: {e}", file=sys.stderr)
        print(f"error: {len(errors)} problem(s); no notebook was written", file=sys.stderr)
        return 1
    for path, rel, nb, count in changed:
        if args.check:
            print(f"{rel}: {count} link(s) to book pages are relative (run tools/relink_notebooks.py)")
        else:
            nbformat.write(nb, str(path))
            print(f"{rel}: {count} link(s) now point at {baseurl}")
    if not changed:
        print("no relative links to book pages; nothing to change")
    return 1 if (args.check and changed) else 0


if __name__ == "__main__":
    sys.exit(main())
