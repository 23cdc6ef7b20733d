"""Sphinx extension: the built site loads nothing from the network.

After an HTML build, every page and style sheet of the output folder is scanned for
resources fetched from another host (scripts, style sheets, fonts, images, frames);
each one is a warning, so a strict build (``-W``) fails. Links a reader follows
(``<a href>``) are fine: the site works offline, the web it points to does not need to.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

# Attributes through which a page loads something, by tag.
_LOADING = {
    "script": ("src",),
    "link": ("href",),
    "img": ("src", "srcset"),
    "iframe": ("src",),
    "embed": ("src",),
    "object": ("data",),
    "source": ("src", "srcset"),
    "audio": ("src",),
    "video": ("src", "poster"),
    "track": ("src",),
}
# rel values of <link> that name a page rather than load a resource
_LINK_ONLY = {"canonical", "alternate", "author", "help", "license", "next", "prev", "search", "index", "top", "up"}
_REMOTE = re.compile(r"^\s*(https?:)?//", re.IGNORECASE)
_CSS_REMOTE = re.compile(r"""(?:url\(\s*['"]?|@import\s+['"])\s*((?:https?:)?//[^'")\s]+)""", re.IGNORECASE)


class _Resources(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.remote: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "style":
            self._in_style = True
        if tag == "link" and set((values.get("rel") or "").lower().split()) <= _LINK_ONLY and values.get("rel"):
            return
        for name in _LOADING.get(tag, ()):
            for url in (values.get(name) or "").split(","):
                if _REMOTE.match(url):
                    self.remote.append(f"<{tag} {name}={url.strip()}>")
        if values.get("style"):
            self.remote.extend(_CSS_REMOTE.findall(values["style"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.remote.extend(_CSS_REMOTE.findall(data))


def remote_resources(html: str) -> list[str]:
    """What an HTML page would load from another host."""
    parser = _Resources()
    parser.feed(html)
    parser.close()
    return parser.remote


def remote_css(css: str) -> list[str]:
    """What a style sheet would load from another host (``url(...)``, ``@import``)."""
    return _CSS_REMOTE.findall(css)


def offline_problems(site: Path) -> list[str]:
    """``"page loads resource"`` for everything the built site at ``site`` would fetch from the network."""
    problems = []
    for path in sorted(site.rglob("*")):
        if path.suffix == ".html":
            found = remote_resources(path.read_text(encoding="utf-8"))
        elif path.suffix == ".css":
            found = remote_css(path.read_text(encoding="utf-8"))
        else:
            continue
        problems.extend(f"{path.relative_to(site)} loads {item}" for item in found)
    return problems


def _check(app: Sphinx, exception: Exception | None) -> None:
    if exception is None and app.builder.format == "html":
        for problem in offline_problems(Path(app.outdir)):
            logger.warning("offline check: %s from the network", problem)


def setup(app: Sphinx) -> dict[str, object]:
    """Scan the HTML output when the build finishes."""
    app.connect("build-finished", _check)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
