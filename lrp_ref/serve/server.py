"""The HTTP side of ``lrp-ref serve``: static page and JSON API on the standard library's ``http.server``.

Why :class:`http.server.ThreadingHTTPServer` and not a web framework: the
demo has five routes, one user and runs on localhost, so the standard library
is enough, and ``lrp-ref serve`` then works right after ``make demo`` with no
extra to install (``import lrp_ref`` needs numpy, scipy and h5py only, and so
does the demo).  Threads let the page's requests (one per rule, sent together)
overlap: NumPy releases the GIL inside its matrix products, and a slow request
never holds up the static files.  The API object (:class:`~.api.Demo`) is
read-only after start-up and :func:`lrp_ref.explain` keeps no state, so the
threads share nothing that changes.  ``http.server`` is not hardened for the
open internet; the server binds to 127.0.0.1 unless ``--host`` says otherwise.

Routes::

    GET  /, /index.html, /app.js, /style.css    the page (lrp_ref/serve/static, no CDN, no external fonts)
    GET  /api/models | /api/rules | /api/samples
    POST /api/explain                           see lrp_ref.serve.api

Every refusal is a one-line JSON object ``{"error": "..."}``: 400 for a bad
request (malformed JSON, wrong Content-Type, a body over 1 MB, a wrong image,
an unknown model or rule, and anything :mod:`lrp_ref` refuses), 404 for an
unknown path, 405 for a wrong method, and 500 (logged with its traceback)
for an unexpected exception.  The server keeps serving after each of them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from ..errors import ArgumentError, LrpRefError
from .api import Demo, RequestError

__all__ = ["MAX_BODY", "DemoServer", "make_server"]

log = logging.getLogger("lrp_ref.serve")

#: largest request body accepted (bytes); a 28 x 28 image as JSON takes about 4 kB
MAX_BODY = 1_000_000
#: a body beyond MAX_BODY is read and dropped up to this size, so that the client sees the 400; larger ones are cut
_DRAIN_LIMIT = 64_000_000

_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
# the page may load nothing from elsewhere: a CDN or external font would fail here before it failed offline
_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def static_file(name: str) -> bytes:
    """A file of the page, read from the installed package (``lrp_ref/serve/static``)."""
    return resources.files("lrp_ref.serve").joinpath("static").joinpath(name).read_bytes()


class DemoServer(ThreadingHTTPServer):
    """A :class:`ThreadingHTTPServer` that carries the :class:`~.api.Demo` it serves."""

    daemon_threads = True  # a request in progress does not keep the process alive after shutdown
    # connections waiting to be accepted: the page opens several at once (one request per rule); with the
    # default of 5 the kernel drops the surplus and the browser retries only after a second
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], demo: Demo) -> None:
        self.demo = demo
        super().__init__(address, Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = host if isinstance(host, str) else host.decode()
        shown = "127.0.0.1" if shown == "0.0.0.0" else shown
        return f"http://[{shown}]:{port}/" if ":" in shown else f"http://{shown}:{port}/"


class Handler(BaseHTTPRequestHandler):
    """One request: a static file, a GET endpoint, or ``POST /api/explain``."""

    server: DemoServer
    server_version = "lrp_ref-serve"
    protocol_version = "HTTP/1.1"
    timeout = 60  # seconds a connection may stay silent (a body that never comes does not hold a thread forever)

    # ------------------------------------------------------------------ replies

    def _send(self, status: int, body: bytes, content_type: str, close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        if content_type.startswith("text/html"):
            self.send_header("Content-Security-Policy", _CSP)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: Any, close: bool = False) -> None:
        body = json.dumps(payload, allow_nan=False, separators=(",", ":")).encode()
        self._send(status, body, "application/json", close)

    def _error(self, status: int, message: str, close: bool = False) -> None:
        one_line = " ".join(message.split())
        log.warning("%s %s -> %d: %s", self.command, self.path, status, one_line)
        self._json(status, {"error": one_line}, close)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)

    # ------------------------------------------------------------------ routes

    def _routes(self) -> dict[str, Callable[[], dict[str, Any]]]:
        demo = self.server.demo
        return {"/api/models": demo.describe_models, "/api/rules": demo.describe_rules,
                "/api/samples": demo.describe_samples}

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        self._guard(lambda: self._get(path))

    def do_HEAD(self) -> None:
        self.do_GET()

    def _get(self, path: str) -> None:
        if path in _STATIC:
            name, content_type = _STATIC[path]
            self._send(HTTPStatus.OK, static_file(name), content_type)
        elif path in self._routes():
            self._json(HTTPStatus.OK, self._routes()[path]())
        elif path == "/api/explain":
            self._error(HTTPStatus.METHOD_NOT_ALLOWED, "GET /api/explain: use POST with a JSON body")
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no such path {path!r}; the page is at / and the API under /api/ "
                                              "(models, rules, samples, explain)")

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        if path != "/api/explain":
            self._drain()
            known = "/api/explain" if path not in _STATIC and path not in self._routes() else f"GET {path}"
            status = HTTPStatus.NOT_FOUND if path not in _STATIC and path not in self._routes() \
                else HTTPStatus.METHOD_NOT_ALLOWED
            self._error(status, f"POST {path}: expected {known}", close=True)
            return
        self._guard(self._explain)

    def _not_allowed(self) -> None:
        self._drain()
        self._error(HTTPStatus.METHOD_NOT_ALLOWED, f"{self.command} {self.path}: expected GET for the page and "
                                                   "the lists, POST /api/explain", close=True)

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    def _drain(self) -> None:
        """Read and drop a body nobody will use, so that the connection stays in step."""
        length = self._length()
        if length is not None and 0 < length <= _DRAIN_LIMIT:
            while length > 0:
                chunk = self.rfile.read(min(length, 65536))
                if not chunk:
                    break
                length -= len(chunk)

    def _length(self) -> int | None:
        text = self.headers.get("Content-Length")
        try:
            return int(text) if text is not None else None
        except ValueError:
            return None

    def _explain(self) -> None:
        content_type = self.headers.get("Content-Type", "")
        length_text = self.headers.get("Content-Length")
        length = self._length()
        if length is None or length < 0:
            found = "none" if length_text is None else repr(length_text)
            self._error(HTTPStatus.BAD_REQUEST, f"expected a Content-Length header (bytes of the JSON body); "
                                                f"found {found}", close=True)
            return
        if length > MAX_BODY:
            self._drain()
            self._error(HTTPStatus.BAD_REQUEST, f"expected a body of at most {MAX_BODY} bytes (one 28 x 28 image "
                                                f"is about 4 kB); found {length} bytes", close=True)
            return
        raw = self.rfile.read(length)
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            self._error(HTTPStatus.BAD_REQUEST, f"expected Content-Type application/json; found "
                                                f"{content_type or 'none'}")
            return
        try:
            body = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
        except UnicodeDecodeError as exc:
            self._error(HTTPStatus.BAD_REQUEST, f"expected a UTF-8 JSON body; found a byte that is not UTF-8 "
                                                f"at position {exc.start}")
            return
        except ValueError as exc:  # json.JSONDecodeError and the NaN/Infinity refusal
            self._error(HTTPStatus.BAD_REQUEST, f"expected a JSON body; found malformed JSON: {exc}")
            return
        self._json(HTTPStatus.OK, self.server.demo.explain(body))

    def _guard(self, action: Callable[[], None]) -> None:
        """Run a route: a :class:`RequestError` is a 400, anything unexpected a logged 500; the server goes on."""
        try:
            action()
        except (RequestError, LrpRefError) as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
        except (BrokenPipeError, ConnectionResetError):
            log.info("%s %s: the client went away", self.command, self.path)
            self.close_connection = True
        except Exception as exc:
            log.exception("%s %s: unexpected error", self.command, self.path)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error (a bug in lrp_ref; please report it): "
                                                          f"{type(exc).__name__}: {exc}", close=True)


def _refuse_constant(name: str) -> float:
    """``json.loads`` hook: NaN and Infinity are not JSON (RFC 8259), so they are refused, never used."""
    raise ValueError(f"{name} is not a JSON number (RFC 8259); send finite numbers")


def make_server(demo: Demo, host: str = "127.0.0.1", port: int = 0) -> DemoServer:
    """A server for ``demo`` bound to ``host:port`` (port 0: any free port; see ``.url``), not yet serving.

    Call ``serve_forever()`` (in a thread, for tests) and ``shutdown()`` then ``server_close()`` to stop.
    """
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise ArgumentError(f"port must be an integer 0..65535 (0: any free port); got {port!r}")
    return DemoServer((host, port), demo)
