"""How chainrule writes numbers and untrusted text for a person to read.

Two rules, each written once here and used by every printed line, drawing and error message:

- ``number(x)``: four decimals, as the lecture prints them, but compact past a million
  (``1.0142e+304``, not a 305-digit line), and ``inf``/``nan`` as words.
- ``printable(text)``: text that came from outside (a file, a label, a command-line argument)
  with every control character written as an escape, so it cannot colour the terminal, move the
  cursor or start a forged line such as ``error: forged``.

>>> number(0.70710678), number(1e200), number(float("-inf"))
('0.7071', '1.0000e+200', '-inf')
>>> printable("ok\\x1b[31m\\nerror: forged")
'ok\\\\x1b[31m\\\\nerror: forged'
"""

from __future__ import annotations

import math

__all__ = ["number", "printable"]

_COMPACT_FROM = 1e6   # from here on, numbers are written in scientific notation


def number(x: float, decimals: int = 4) -> str:
    """``x`` with ``decimals`` decimals, or in scientific notation when it is a million or more.

    >>> number(-1.5), number(123456.0), number(1234567.0), number(float("nan"))
    ('-1.5000', '123456.0000', '1.2346e+06', 'nan')
    """
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    if abs(x) >= _COMPACT_FROM:
        return f"{x:.{decimals}e}"
    return f"{x:.{decimals}f}"


def printable(text) -> str:
    """``text`` with control characters (and anything else unprintable, such as a lone surrogate
    or a right-to-left override) replaced by their Python escapes; printable text is unchanged.

    >>> printable("x1*w1 + b"), printable("tab\\there"), printable("\\ud800")
    ('x1*w1 + b', 'tab\\\\there', '\\\\ud800')
    """
    text = str(text)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
