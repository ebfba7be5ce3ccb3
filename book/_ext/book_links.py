"""Sphinx extension: links to the published book become internal links of the book being built.

The chapters link to other pages of the book through the published book's address
(``html: baseurl:`` in ``_config.yml``; ``tools/relink_notebooks.py`` writes these links), so that
the links work in a chapter opened alone in Google Colab. When the book itself is built (either
edition, anywhere), every link whose address starts with the baseurl and names a page of this build
is turned into an ordinary relative link to that page (the builder's ``get_relative_uri``; a
``#heading`` anchor is kept, mapped like MyST maps ``[text](page.md#heading)``). So a local build
stays local, and the student edition never links to the published instructor edition, whose pages
contain the solutions.

A link to the baseurl that names no page of this build, or a heading anchor that the page does
not have, is a build warning (the book is built with ``-W``, so the build fails).

Setting ``html_baseurl`` also makes Sphinx put ``<link rel="canonical" href="{baseurl}...">`` into
every page. The extension leaves that out: in the student edition it would name the instructor
page as the page's true address, and without it the built pages reference the published book
nowhere (tests/test_book_browser.py checks that neither edition has such an href).

Registered in _config.yml and _config_student.yml under ``sphinx: local_extensions:``.
"""
from __future__ import annotations

from urllib.parse import unquote, urlsplit

__all__ = ["published_target", "setup"]


def _site_and_path(url):
    """(host, path) of an http(s) URL, host lower-cased; None for any other URL."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return parts.netloc.lower(), parts.path


def published_target(uri, baseurl, root_doc):
    """Which page of the book ``uri`` names, if it is an address under ``baseurl``.

    Returns None when ``uri`` is not under ``baseurl`` (http and https count as the same site).
    Otherwise returns ``(docname, anchor)``: ``docname`` is the Sphinx document name of the page
    ("notebooks/07_sampling" for ``{baseurl}notebooks/07_sampling.html``; ``root_doc`` for the
    site's root, ``{baseurl}`` or ``{baseurl}index.html``), or None when the address is not a
    page's (e.g. an image, a folder or a query); ``anchor`` is the part after '#' ("" if none).
    Whether ``docname`` exists is for the caller to check.
    """
    if not baseurl:
        return None
    base = _site_and_path(baseurl if baseurl.endswith("/") else baseurl + "/")
    here = _site_and_path(uri)
    if base is None or here is None or here[0] != base[0]:
        return None
    path = base[1] if here[1] == base[1].rstrip("/") else here[1]      # ".../ddpm-book-tf" is the root
    if not path.startswith(base[1]):
        return None
    rest = unquote(path[len(base[1]):])
    anchor = unquote(urlsplit(uri).fragment)
    if urlsplit(uri).query:
        return None, anchor
    if rest in ("", "index.html"):
        return root_doc, anchor
    if rest.endswith(".html") and not rest.startswith("/") and "//" not in rest:
        return rest[: -len(".html")], anchor
    return None, anchor


def _relink(app, doctree, docname):
    """doctree-resolved: rewrite this page's links to the published book as internal links."""
    from docutils import nodes
    from sphinx.errors import NoUri
    from sphinx.util import logging

    logger = logging.getLogger(__name__)
    baseurl = app.config.html_baseurl
    if not baseurl:
        return
    env = app.builder.env
    for node in list(doctree.findall(nodes.reference)):
        uri = node.get("refuri")
        if not uri:
            continue
        target = published_target(uri, baseurl, app.config.root_doc)
        if target is None:
            continue
        target_doc, anchor = target
        if target_doc is None or target_doc not in env.all_docs:
            logger.warning(f"link to the published book names no page of this build: {uri}",
                           location=node, type="book_links", subtype="missing_page")
            continue
        refid = ""
        if anchor:
            slugs = env.metadata.get(target_doc, {}).get("myst_slugs", {})
            if anchor in slugs:
                refid = slugs[anchor][1]
            else:
                logger.warning(f"link to the published book: no heading anchor {anchor!r} in "
                               f"{target_doc!r}: {uri}",
                               location=node, type="book_links", subtype="missing_anchor")
                refid = anchor
        if target_doc == docname and refid:
            node["refuri"] = "#" + refid
        else:
            try:
                node["refuri"] = app.builder.get_relative_uri(docname, target_doc) + (
                    "#" + refid if refid else "")
            except NoUri:               # a builder without links to other documents: keep the text
                node.replace_self(node.children)
                continue
        node["internal"] = True
        node["classes"] = [c for c in node["classes"] if c != "external"]


def _no_canonical_link(app, pagename, templatename, context, doctree):
    """html-page-context: no <link rel="canonical"> to the published book (see the module doc)."""
    context["pageurl"] = None


def setup(app):
    app.connect("doctree-resolved", _relink)
    app.connect("html-page-context", _no_canonical_link)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
