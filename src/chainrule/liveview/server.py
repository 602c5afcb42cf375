"""The web side of ``chainrule live``: a small local HTTP server, reachable only by whoever has the token.

Safety, in the order a request meets it:

1. It listens on 127.0.0.1 only, so nothing off this machine can connect.
2. The ``Host`` header must name 127.0.0.1 or localhost with this port: a web page that rebinds its
   own domain name to 127.0.0.1 (DNS rebinding) is refused.
3. An ``Origin`` header, when there is one (browsers send it with every POST and every script
   request from another page), must be this server's own: another site's script cannot drive it.
4. Every request carries the random token printed in the URL (``?token=...``, as Jupyter does),
   or the page's ``X-Chainrule-Token`` header: another local user cannot drive it either.
5. A control's body is at most 4 kB of JSON, and every value in it is checked by the trainer
   (:mod:`chainrule.liveview.state`), which answers a refusal with a message the page shows.

The page and its assets ship inside the package (``chainrule/liveview/assets``); nothing is fetched
from anywhere else, and the Content-Security-Policy says so to the browser too.
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from urllib.parse import parse_qs, urlsplit

from .controls import LiveError
from .state import Trainer

__all__ = ["LiveServer"]

_ASSETS = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
_MAX_BODY = 4096
_POLL_S = 1.0           # how long a request for the next frame waits before answering with the same one
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'")


class LiveServer:
    """Serve the live page for ``trainer`` on 127.0.0.1 (``port`` 0 picks a free one).

    >>> import random; random.seed(0)
    >>> from chainrule import MLP
    >>> from chainrule.liveview.state import Trainer
    >>> server = LiveServer(Trainer(MLP(2, [2, 1]), [[0, 0], [1, 1]], [0, 1], loss="mse"))
    >>> server = server.start(); server.url.startswith("http://127.0.0.1:")
    True
    >>> server.close(); server.trainer.alive
    False
    """

    def __init__(self, trainer: Trainer, port: int = 0, token: str | None = None):
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be 0 (any free port) or 1 to 65535, got {port!r}")
        self.trainer = trainer
        self.token = token or secrets.token_urlsafe(24)
        try:
            self.httpd = _HTTPServer(("127.0.0.1", port), _Handler)
        except OSError as exc:
            raise OSError(f"cannot listen on 127.0.0.1:{port} ({exc.strerror}); choose another --port, "
                          "or 0 for any free one") from None
        self.httpd.live = self
        self.port = self.httpd.server_address[1]
        self.hosts = {f"127.0.0.1:{self.port}", f"localhost:{self.port}"}
        self.origins = {f"http://{host}" for host in self.hosts}
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="chainrule-live-server", daemon=True)
        self._closed = False

    @property
    def url(self) -> str:
        """The page's address, token included: whoever has it can drive the training."""
        return f"http://127.0.0.1:{self.port}/?token={self.token}"

    def start(self) -> "LiveServer":
        """Start training and serving, each in its own thread."""
        if not self.trainer.alive:
            self.trainer.start()
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and training, and wait for both threads; the port is free afterwards."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            self.httpd.shutdown()
            self._thread.join(10)
        self.httpd.server_close()
        self.trainer.close()

    def __enter__(self) -> "LiveServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True           # a browser's open keep-alive connection never blocks shutdown
    block_on_close = False
    live: LiveServer

    def handle_error(self, request, client_address) -> None:
        # A browser closing its tab mid-answer is normal; anything else is ours and is shown.
        import sys
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError, TimeoutError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"   # keep-alive: the page asks for a frame every few milliseconds
    # Headers and body go out as separate writes; with Nagle's algorithm on, the body then waits
    # for the browser's delayed ACK, 40 ms a request (measured): that alone would cap the page at 20 fps.
    disable_nagle_algorithm = True
    server_version = "chainrule-live"
    sys_version = ""
    timeout = 60

    def log_message(self, format, *args) -> None:   # noqa: A002 -- the base class's name
        pass                        # the terminal is the user's; the page shows what matters

    # --- the checks every request passes ----------------------------------------------------------

    def _refusal(self, query: dict) -> tuple[HTTPStatus, str] | None:
        live = self.server.live
        if self.headers.get("Host", "") not in live.hosts:
            return HTTPStatus.FORBIDDEN, "wrong Host header: open the page at the 127.0.0.1 address chainrule printed"
        origin = self.headers.get("Origin")
        if origin is not None and origin not in live.origins:
            return HTTPStatus.FORBIDDEN, "requests from other web pages are refused"
        token = self.headers.get("X-Chainrule-Token") or (query.get("token") or [""])[0]
        if not hmac.compare_digest(token.encode("utf-8", "replace"), live.token.encode()):
            return HTTPStatus.FORBIDDEN, ("missing or wrong token: open the full URL that chainrule live printed "
                                          "(it ends in ?token=...)")
        return None

    def _send(self, status: HTTPStatus, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy", _CSP)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._send(status, json.dumps({"error": message}).encode())

    def _route(self, method: str) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query, max_num_fields=10)
        refused = self._refusal(query)
        if refused is not None:
            self._error(*refused)
            return
        trainer = self.server.live.trainer
        path = parts.path
        if method == "GET" and path == "/":
            self._send(HTTPStatus.OK, _page(self.server.live.token), "text/html; charset=utf-8")
        elif method == "GET" and path.startswith("/assets/") and path[8:] in _ASSETS:
            self._send(HTTPStatus.OK, _asset(path[8:]), _ASSETS[path[8:]])
        elif method == "GET" and path == "/api/frame":
            after = _int_param(query, "after")
            self._send(HTTPStatus.OK, trainer.frame_json(after if after is not None else -1, _POLL_S))
        elif method == "GET" and path == "/api/layout":
            layout = trainer.layout_json(_int_param(query, "id") or 0)
            if layout is None:
                self._error(HTTPStatus.NOT_FOUND, "that drawing is not ready (or no longer kept)")
            else:
                self._send(HTTPStatus.OK, layout)
        elif method == "POST" and path == "/api/control":
            self._control(trainer)
        else:
            self._error(HTTPStatus.NOT_FOUND, f"nothing at {path[:60]!r}")

    def _control(self, trainer: Trainer) -> None:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._error(HTTPStatus.LENGTH_REQUIRED, "a control needs a Content-Length")
            return
        if not 0 < length <= _MAX_BODY:
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"a control is at most {_MAX_BODY} bytes of JSON")
            self.close_connection = True
            return
        try:
            body = json.loads(self.rfile.read(length))
        except (ValueError, UnicodeDecodeError):
            self._error(HTTPStatus.BAD_REQUEST, "a control must be a JSON object like {\"action\": \"play\"}")
            return
        if not isinstance(body, dict):
            self._error(HTTPStatus.BAD_REQUEST, "a control must be a JSON object like {\"action\": \"play\"}")
            return
        try:
            trainer.command(body)
        except LiveError as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
            return
        self._send(HTTPStatus.OK, b'{"ok":true}')

    def do_GET(self) -> None:  # noqa: N802 -- http.server's names
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")


def _int_param(query: dict, name: str) -> int | None:
    value = (query.get(name) or [""])[0]
    return int(value) if value.isdigit() and len(value) < 12 else None


def _asset(name: str) -> bytes:
    return (files("chainrule.liveview") / "assets" / name).read_bytes()


def _page(token: str) -> bytes:
    # The token is ours (URL-safe base64), so it can go into the page as it is.
    return _asset("index.html").replace(b"{{TOKEN}}", token.encode())
