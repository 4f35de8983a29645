"""User text (class names, paths, file names) made safe to print through Rich.

Every name headstart prints comes from files it does not control: a class folder called
``[/x]`` is Rich markup (a MarkupError traceback once ended ``train``), ``[link=...]`` renders
as a link, and an ESC byte in a file name drives the terminal. ``shown`` gives the text
as it is, visibly: control characters (C0, DEL, C1, and the bidirectional overrides that
reorder a line) become ``\\x1b``-style escapes, and markup is escaped.

Example:
    >>> shown("[/x]")
    '\\\\[/x]'
    >>> printable("a\\x1b[31mred")
    'a\\\\x1b[31mred'
"""

from __future__ import annotations

import re

from rich.markup import escape

# C0 (tab and newline included: a name is one line), DEL, C1, and the bidi controls.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: object) -> str:
    """``str(text)`` with every control character replaced by its visible escape."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}", str(text))


def shown(text: object) -> str:
    """``text`` ready for Rich markup: control characters made visible, markup escaped."""
    return escape(printable(text))


# A cell a spreadsheet would run as a formula (or whose meaning it would change) starts with
# one of these; the usual rule (OWASP "CSV injection") puts a single quote before it, which
# spreadsheets show as text and do not display. A cell already starting with a quote gets
# one more, so ``from_cell`` gives back exactly what ``cell`` was given.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell(value: str) -> str:
    """``value`` as a CSV cell no spreadsheet runs: '=cmd|...' -> "'=cmd|...".

    Example:
        >>> cell("=HYPERLINK(\\"http://x\\")"), cell("cat")
        ('\\'=HYPERLINK("http://x")', 'cat')
    """
    return "'" + value if value[:1] in FORMULA_STARTS or value[:1] == "'" else value


def from_cell(value: str) -> str:
    """The text ``cell`` was given (reading back a headstart CSV); other text unchanged."""
    return value[1:] if value[:1] == "'" and (value[1:2] in FORMULA_STARTS or value[1:2] == "'") else value
