"""HTML of received mail made safe to show: nh3 (the Rust `ammonia` sanitizer) with a strict
allow-list, and our policy for what may load.

- Tags and attributes: only those listed below; script, style, iframe, object, embed, svg,
  math, template, noscript are removed with their content; forms and their controls, base,
  link and meta are removed (their text stays). Every event handler goes (no on* attribute is
  allowed), and so do id, class and name.
- URLs: links may be http, https or mailto (javascript:, data:, vbscript: and relative links
  are dropped). Images: `cid:` references to the message's own parts are kept (or mapped
  through `cid_map` by the caller), inline `data:` images only for raster image types
  (png, jpeg, gif, webp, bmp), remote images are replaced by a placeholder and counted unless
  `allow_remote` (then kept, https only).
- style attributes: kept only with a few harmless properties (colours, font, text alignment
  and decoration, spacing); anything with url(), expression(), escapes or @import goes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import nh3

__all__ = ["PLACEHOLDER", "SanitizedHtml", "sanitize_html"]

# A 1x1 transparent GIF: the src of a blocked remote image (nothing is fetched).
PLACEHOLDER = "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"

TAGS = {
    "a", "abbr", "b", "bdi", "bdo", "blockquote", "br", "caption", "center", "cite", "code",
    "col", "colgroup", "dd", "del", "dfn", "div", "dl", "dt", "em", "font", "h1", "h2", "h3",
    "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "mark", "ol", "p", "pre", "q", "s",
    "samp", "small", "span", "strike", "strong", "sub", "sup", "table", "tbody", "td", "tfoot",
    "th", "thead", "tr", "tt", "u", "ul", "var",
}  # fmt: skip
REMOVED_WITH_CONTENT = {
    "script", "style", "iframe", "object", "embed", "applet", "svg", "math", "template",
    "noscript", "title", "textarea", "select", "frameset", "frame", "noframes",
}  # fmt: skip
_TABLE_CELL = {"align", "valign", "width", "height", "colspan", "rowspan", "bgcolor"}
ATTRIBUTES = {
    "*": {"title", "dir", "lang", "style", "align"},
    "a": {"href"},
    "img": {"src", "alt", "width", "height", "border"},
    "font": {"color", "face", "size"},
    "table": {"width", "border", "cellpadding", "cellspacing", "bgcolor"},
    "td": _TABLE_CELL,
    "th": _TABLE_CELL,
    "tr": {"valign", "bgcolor"},
    "col": {"span", "width"},
    "colgroup": {"span", "width"},
    "ol": {"start", "type"},
    "li": {"value"},
    "blockquote": {"cite"},
    "q": {"cite"},
    "del": {"datetime"},
    "ins": {"datetime"},
}
STYLE_PROPERTIES = {
    "color", "background-color", "font-family", "font-size", "font-style", "font-weight",
    "text-align", "text-decoration", "text-indent", "line-height", "letter-spacing",
    "white-space", "vertical-align", "margin", "margin-top", "margin-bottom", "margin-left",
    "margin-right", "padding", "padding-top", "padding-bottom", "padding-left", "padding-right",
    "border", "border-collapse", "border-color", "border-style", "border-width", "width",
    "height", "max-width", "display",
}  # fmt: skip
URL_SCHEMES = {"http", "https", "mailto", "cid", "data"}  # data/cid: for images only (below)
_DATA_IMAGE = re.compile(r"data:image/(png|jpeg|jpg|gif|webp|bmp);base64,[A-Za-z0-9+/=\s]*\Z", re.I)
_BAD_STYLE = re.compile(r"url\s*\(|expression\s*\(|@import|\\|javascript:|behavio(u)?r", re.I)


@dataclass(frozen=True)
class SanitizedHtml:
    """The safe HTML, how many remote images were blocked (the "load remote images?" prompt),
    which cid: parts it refers to, and whether anything was removed at all."""

    html: str
    remote_images_blocked: int
    remote_images: tuple[str, ...]
    cid_references: tuple[str, ...]
    changed: bool


def sanitize_html(
    html: str,
    *,
    allow_remote: bool = False,
    cid_map: Mapping[str, str] | None = None,
) -> SanitizedHtml:
    """Sanitize one HTML body. cid_map maps a Content-ID (without <>) to the URL the caller
    shows that part under; unmapped cid: references stay as they are."""
    blocked: list[str] = []
    cids: list[str] = []

    def attribute_filter(tag: str, attribute: str, value: str) -> str | None:
        if attribute == "style":
            return None if _BAD_STYLE.search(value) else value
        if tag == "img" and attribute == "src":
            return _image_source(value.strip(), allow_remote, cid_map, blocked, cids)
        if attribute in ("href", "cite"):
            scheme = value.strip().split(":", 1)[0].lower() if ":" in value else ""
            return value if scheme in ("http", "https", "mailto") else None
        return value

    cleaned = nh3.clean(
        html,
        tags=TAGS,
        clean_content_tags=REMOVED_WITH_CONTENT,
        attributes=ATTRIBUTES,
        attribute_filter=attribute_filter,
        strip_comments=True,
        link_rel="noopener noreferrer",
        url_schemes=URL_SCHEMES,
        filter_style_properties=STYLE_PROPERTIES,
        url_relative="deny",
    )
    return SanitizedHtml(
        html=cleaned,
        remote_images_blocked=len(blocked),
        remote_images=tuple(blocked),
        cid_references=tuple(dict.fromkeys(cids)),
        changed=cleaned != html,
    )


def _image_source(
    value: str,
    allow_remote: bool,
    cid_map: Mapping[str, str] | None,
    blocked: list[str],
    cids: list[str],
) -> str | None:
    scheme = value.split(":", 1)[0].lower() if ":" in value else ""
    if scheme == "cid":
        content_id = value[4:].strip().strip("<>")
        cids.append(content_id)
        if cid_map is not None and content_id in cid_map:
            return cid_map[content_id]
        return value
    if scheme == "data":
        return value if _DATA_IMAGE.match(value) else None
    if scheme in ("http", "https"):
        if allow_remote and scheme == "https":
            return value
        blocked.append(value)
        return PLACEHOLDER
    return None
