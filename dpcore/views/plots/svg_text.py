"""Text, colour and dash values made safe for inline SVG that goes into Markdown (``figure_svg``'s helpers).

Everything a figure carries (run names come from users) is escaped for XML, stripped of characters XML forbids,
kept on one line, and Markdown-active characters become character references, so nothing breaks out of the SVG
or turns into Markdown around it. Pure functions, no Streamlit, no I/O.
"""

from __future__ import annotations

import html
import re
from typing import Any

_SAFE_COLOR = re.compile(r"^[#A-Za-z0-9(),.%\s-]{1,64}$")
_SAFE_DASH = re.compile(r"^[0-9.,\s]*(px)?[0-9.,\spx%]*$")
_TAG = re.compile(r"<[^>]*>")
_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_DASH_FACTORS = {"dot": (1, 1), "dash": (3, 3), "longdash": (5, 5), "dashdot": (3, 1, 1, 1),
                 "longdashdot": (5, 2, 1, 2)}
#: Characters Markdown (CommonMark, GFM, Streamlit's :color[] and $math$) could act on, as character references.
#: GFM finds autolinks (www., http://, a@b.io) after references are decoded, so ':' and '@' (and 'www' before a
#: '.') also get an invisible word joiner (U+2060) that breaks those patterns.
_MARKDOWN = {"*": "&#42;", "_": "&#95;", "`": "&#96;", "[": "&#91;", "]": "&#93;", "\\": "&#92;", "~": "&#126;",
             "$": "&#36;", ":": "&#58;&#8288;", "@": "&#64;&#8288;", "|": "&#124;", "!": "&#33;"}
_WWW = re.compile(r"(www)\.", re.IGNORECASE)
_MARKDOWN_RE = re.compile("|".join(re.escape(char) for char in _MARKDOWN))


def escape_attr(value: Any) -> str:
    """``value`` as an attribute value: escaped, one line, no characters XML forbids."""
    return html.escape(_CONTROL.sub("", re.sub(r"\s", " ", str(value))), quote=True)


def escape_text(value: Any) -> str:
    """``value`` as SVG text content: escaped like an attribute, and inert to Markdown around the SVG.

    Streamlit parses a one-line ``<svg>`` as a paragraph with inline HTML, so its text would be Markdown; wrapped in
    a ``<div>`` it is an HTML block and nothing in it is. Either way the text shows as typed (plus invisible joiners).
    """
    escaped = _MARKDOWN_RE.sub(lambda match: _MARKDOWN[match.group(0)], escape_attr(value))
    return _WWW.sub(r"\1&#8288;.", escaped)


def plain_lines(text: Any) -> list[str]:
    """Plotly's rich text as plain lines: ``<br>`` starts a new line, other tags are dropped."""
    if text is None or text == "":
        return []
    return [html.unescape(_TAG.sub("", part)).strip() for part in _BREAK.split(str(text))]


def safe_color(value: Any, fallback: str) -> str:
    """A colour for an attribute: ``value`` when it looks like a CSS colour, else ``fallback``; escaped.

    Near-black hex colours (the target line, dark labels) become ``currentColor``, so they show on a dark page.
    """
    if not (isinstance(value, str) and _SAFE_COLOR.match(value)):
        return fallback
    digits = value[1:] if value.startswith("#") and len(value) in (4, 7) else ""
    if digits and all(c in "0123456789abcdefABCDEF" for c in digits):
        rgb = [int(d * 2, 16) for d in digits] if len(digits) == 3 else [int(digits[i:i + 2], 16) for i in (0, 2, 4)]
        if 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2] < 60:
            return "currentColor"
    return escape_attr(value)


def dasharray(dash: Any, width: float) -> str:
    """The ``stroke-dasharray`` attribute (with its leading space) for a plotly dash name or list, or ''."""
    if not isinstance(dash, str) or dash in ("", "solid"):
        return ""
    unit = max(float(width), 3.0)
    if dash in _DASH_FACTORS:
        return f' stroke-dasharray="{",".join(f"{unit * f:g}" for f in _DASH_FACTORS[dash])}"'
    if _SAFE_DASH.match(dash):
        return f' stroke-dasharray="{escape_attr(dash.replace("px", ""))}"'
    return ""


def text_width(text: str, size: float) -> float:
    """A rough width in px of ``text`` at font ``size`` (no font metrics here)."""
    return 0.6 * size * len(text)


__all__ = ["dasharray", "escape_attr", "escape_text", "plain_lines", "safe_color", "text_width"]
