"""The local labelling web server (standard library `http.server`): one item at a time, answers stored at once.

Security, because the page shows adversarial model outputs and writes to the store:
- it binds 127.0.0.1 unless told otherwise, and answers only requests whose Host header names it
  (127.0.0.1 / localhost, the --host given, or an IP address when bound to all interfaces), so a web
  page that rebinds its DNS name to this machine cannot read or post;
- every POST needs the session cookie (HttpOnly, SameSite=Strict), the session's CSRF token in the form
  and an Origin (or, without one, a Referer) of this server itself: a cross-site post is refused with 403
  and stores nothing;
- every text is escaped (harness.annotate.page), the Content-Security-Policy allows only the page's own
  nonce-carrying inline script and style and forms posting to itself, and framing is refused;
- a visitor who has not said who they are holds a signed token and is stored nowhere, so a flood of
  cookie-less requests cannot evict a labelling session (see AnnotateApp); an empty --host is refused;
- bodies are capped at MAX_BODY_BYTES; a protocol error (a skipped rank, a missing answer)
  is an HTTP 400 with the reason on the page, and nothing is stored.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import http.cookies
import ipaddress
import secrets
import threading
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from harness.annotate import page
from harness.annotate.session import Labelling
from harness.errors import UsageError
from harness.humans.collect import AnswerError, check_annotator, letter

COOKIE = "harness_annotate"
MAX_BODY_BYTES = 64 * 1024
MAX_SESSIONS = 10_000
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass
class Session:
    csrf: str
    annotator: str | None = None


class Refused(Exception):
    """A request this server will not answer: (status, reason shown on the page)."""

    def __init__(self, status: HTTPStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def check_host(host: str) -> str:
    """The --host to listen on; UsageError for an empty one (it would listen on every interface)."""
    if not host.strip():
        raise UsageError("--host is empty, which would listen on every interface: pass 127.0.0.1 (this machine "
                         "only), or 0.0.0.0 to share the page on purpose")
    return host


class AnnotateApp:
    """What the request handler serves: the labelling state, the sessions and who may talk to it.

    A session token is a random nonce signed with this server's secret, and its CSRF token is derived from it,
    so a visitor who has not yet said who they are is stored nowhere: a flood of cookie-less requests (which any
    web page can send to loopback) costs no memory and evicts no one. Only started sessions (an annotator named
    through the CSRF-checked start form) are kept, at most MAX_SESSIONS, the least recently used going first.
    """

    def __init__(self, labelling: Labelling, *, host: str, annotator: str | None = None,
                 on_event: Callable[[str], None] | None = None) -> None:
        self.labelling = labelling
        self.host = check_host(host)
        self.port = 0
        self.annotator = check_annotator(annotator) if annotator is not None else None
        self.on_event = on_event or (lambda _message: None)
        self._secret = secrets.token_bytes(32)
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    # -- sessions ------------------------------------------------------------------------------------
    def _mac(self, purpose: str, text: str) -> str:
        return hmac.new(self._secret, f"{purpose}\x1f{text}".encode(), hashlib.sha256).hexdigest()

    def _fresh(self, token: str) -> Session:
        return Session(csrf=self._mac("csrf", token), annotator=self.annotator)

    def session(self, token: str | None) -> Session | None:
        """The session of a cookie: a started one, or a fresh one this server signed; None otherwise."""
        if not token:
            return None
        with self._lock:
            started = self._sessions.get(token)
            if started is not None:
                self._sessions.move_to_end(token)
                return started
        nonce, _, mac = token.partition(".")
        if not nonce or not hmac.compare_digest(mac.encode(), self._mac("session", nonce).encode()):
            return None
        return self._fresh(token)

    def new_session(self) -> tuple[str, Session]:
        """A signed token and its fresh session, stored nowhere until the visitor says who they are."""
        nonce = secrets.token_urlsafe(24)
        token = f"{nonce}.{self._mac('session', nonce)}"
        return token, self._fresh(token)

    def start(self, token: str, session: Session, annotator: str) -> None:
        """Name the session's annotator and keep it (the least recently used started session goes first)."""
        with self._lock:
            session.annotator = annotator
            self._sessions[token] = session
            self._sessions.move_to_end(token)
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)

    # -- who may talk to us ---------------------------------------------------------------------------
    def host_allowed(self, host_header: str | None) -> bool:
        """The Host header names this server: a local name, the --host given, or (bound to all interfaces) any
        IP address; never another DNS name (DNS rebinding)."""
        if not host_header:
            return False
        parsed = urllib.parse.urlsplit("//" + host_header)
        try:
            port = parsed.port
        except ValueError:
            return False
        name = (parsed.hostname or "").lower()
        if port != self.port:
            return False
        if name in LOCAL_HOSTS and self.host in (*LOCAL_HOSTS, "0.0.0.0", "::"):
            return True
        if name == self.host.lower().strip("[]"):
            return True
        if self.host in ("0.0.0.0", "::"):
            try:
                ipaddress.ip_address(name)
                return True
            except ValueError:
                return False
        return False


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def version_string(self) -> str:
        return "harness-annotate"

    @property
    def app(self) -> AnnotateApp:
        return self.server.app

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # requests are not logged; answers are reported through on_event

    # -- responses -------------------------------------------------------------------------------------
    def _headers(self, status: HTTPStatus, nonce: str, length: int, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(length))
        self.send_header("Content-Security-Policy",
                         f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
                         "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "same-origin")
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("Cache-Control", "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()

    def _send(self, status: HTTPStatus, html: str, nonce: str, extra: dict[str, str] | None = None) -> None:
        body = html.encode("utf-8")
        self._headers(status, nonce, len(body), extra)
        if self.command != "HEAD":
            self.wfile.write(body)

    def _redirect(self, extra: dict[str, str] | None = None) -> None:
        nonce = secrets.token_urlsafe(16)
        self._headers(HTTPStatus.SEE_OTHER, nonce, 0, {"Location": "/", **(extra or {})})

    def _refuse(self, exc: Refused) -> None:
        # A refused request's body may be unread: close the connection so it is never parsed as a request.
        self.close_connection = True
        nonce = secrets.token_urlsafe(16)
        self._send(exc.status, page.message_page(exc.reason, nonce), nonce, {"Connection": "close"})

    @staticmethod
    def _cookie(token: str) -> dict[str, str]:
        return {"Set-Cookie": f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"}

    def _token(self) -> str | None:
        raw = self.headers.get("Cookie")
        if not raw:
            return None
        try:
            jar = http.cookies.SimpleCookie(raw)
        except http.cookies.CookieError:
            return None
        morsel = jar.get(COOKIE)
        return morsel.value if morsel else None

    # -- GET ---------------------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        try:
            if not self.app.host_allowed(self.headers.get("Host")):
                raise Refused(HTTPStatus.FORBIDDEN, "this labelling server answers only requests addressed to it")
            path = urllib.parse.urlsplit(self.path).path
            if path != "/":
                raise Refused(HTTPStatus.NOT_FOUND, "no such page")
            token = self._token()
            session = self.app.session(token)
            extra = None
            if session is None:
                token, session = self.app.new_session()
                extra = self._cookie(token)
            self._show(session, extra=extra)
        except Refused as exc:
            self._refuse(exc)
        except Exception as exc:  # noqa: BLE001 - one request fails, the server goes on
            self.app.on_event(f"error serving {self.path[:80]}: {type(exc).__name__}: {exc}")
            self._refuse(Refused(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error; see the terminal"))

    do_HEAD = do_GET

    def _show(self, session: Session, *, status: HTTPStatus = HTTPStatus.OK, extra: dict[str, str] | None = None,
              error: str | None = None, item_key: str | None = None, values: list[str | None] | None = None) -> None:
        nonce = secrets.token_urlsafe(16)
        lab = self.app.labelling
        if session.annotator is None:
            self._send(status, page.start_page(csrf=session.csrf, nonce=nonce, error=error), nonce, extra)
            return
        who = session.annotator
        item = lab.item(item_key) if item_key else lab.next_item(who)
        progress = lab.progress(who)
        if item is None:
            self._send(status, page.done_page(total=progress.total, csrf=session.csrf, nonce=nonce, annotator=who,
                                              progress=progress), nonce, extra)
            return
        shown = lab.serve(who, item)
        if values is None:
            pre = lab.prefill(who, item)
            values = [page.value_of(lab.task, c) for c in pre] if pre else None
        contents = item.contents(shown)
        texts = [item.outputs[group[0]].output for group in contents]
        html = page.item_page(item=item, texts=texts, copies=[len(group) for group in contents], task=lab.task, csrf=session.csrf, nonce=nonce, annotator=who,
                              progress=progress, values=values, error=error)
        self._send(status, html, nonce, extra)

    # -- POST --------------------------------------------------------------------------------------------
    def do_POST(self) -> None:  # noqa: N802 - the base class's name
        try:
            session, form = self._checked_post()
            path = urllib.parse.urlsplit(self.path).path
            if path == "/answer":
                self._answer(session, form)
            elif path == "/skip":
                item = self._item_of(session, form)
                self.app.labelling.skip(self._who(session), item)
                self._redirect()
            elif path == "/undo":
                who = self._who(session)
                undone = self.app.labelling.undo(who)
                if undone is not None:
                    self.app.on_event(f"{who}: took back the answer on item {undone.position}")
                self._redirect()
            elif path == "/start":
                self._start(session, form)
            else:
                raise Refused(HTTPStatus.NOT_FOUND, "no such action")
        except Refused as exc:
            self._refuse(exc)
        except Exception as exc:  # noqa: BLE001 - one request fails, the server goes on
            self.app.on_event(f"error handling {self.path[:80]}: {type(exc).__name__}: {exc}")
            self._refuse(Refused(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error; nothing was stored"))

    def _checked_post(self) -> tuple[Session, dict[str, str]]:
        """The session and form of a POST that passed every cross-site check; Refused otherwise."""
        host = self.headers.get("Host")
        if not self.app.host_allowed(host):
            raise Refused(HTTPStatus.FORBIDDEN, "refused: this labelling server answers only requests addressed to it")
        own = f"http://{host}"
        origin = self.headers.get("Origin")
        referer = self.headers.get("Referer")
        if origin is not None:
            if origin != own:
                raise Refused(HTTPStatus.FORBIDDEN, "refused: a cross-site post (another origin); nothing was stored")
        elif referer is None or not (referer == own or referer.startswith(own + "/")):
            raise Refused(HTTPStatus.FORBIDDEN, "refused: a post without this page's origin; nothing was stored")
        try:
            length = int(self.headers.get("Content-Length") or "0")
        except ValueError:
            raise Refused(HTTPStatus.BAD_REQUEST, "bad Content-Length") from None
        if length < 0 or length > MAX_BODY_BYTES:
            raise Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"a form larger than {MAX_BODY_BYTES} bytes")
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            raise Refused(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "forms only (application/x-www-form-urlencoded)")
        raw = self.rfile.read(length)
        session = self.app.session(self._token())
        if session is None:
            raise Refused(HTTPStatus.FORBIDDEN, "refused: no session (the page expired or the server restarted); "
                                                "reload the page; nothing was stored")
        try:
            pairs = urllib.parse.parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False,
                                           max_num_fields=200)
        except (UnicodeDecodeError, ValueError):
            raise Refused(HTTPStatus.BAD_REQUEST, "an unreadable form; nothing was stored") from None
        form: dict[str, str] = {}
        for k, v in pairs:
            if k in form:
                raise Refused(HTTPStatus.BAD_REQUEST, f"the form gives {k[:20]!r} twice; nothing was stored")
            form[k] = v
        if not hmac.compare_digest(form.get("csrf", "").encode(), session.csrf.encode()):
            raise Refused(HTTPStatus.FORBIDDEN, "refused: the form's token does not match this session; reload the "
                                                "page; nothing was stored")
        return session, form

    def _who(self, session: Session) -> str:
        if session.annotator is None:
            raise Refused(HTTPStatus.BAD_REQUEST, "say who is labelling first")
        return session.annotator

    def _item_of(self, session: Session, form: dict[str, str]) -> Any:
        self._who(session)
        item = self.app.labelling.item(form.get("item", ""))
        if item is None:
            raise Refused(HTTPStatus.BAD_REQUEST, "the form names an item that is not in this plan; nothing stored")
        return item

    def _answer(self, session: Session, form: dict[str, str]) -> None:
        item = self._item_of(session, form)
        who = self._who(session)
        lab = self.app.labelling
        values = [form.get(letter(j), "") for j in range(item.n_contents)]
        known = {"csrf", "item", *(letter(j) for j in range(item.n_contents))}
        try:
            extra_fields = sorted(set(form) - known)
            if extra_fields:
                raise AnswerError(f"unknown field(s) {', '.join(f[:20] for f in extra_fields[:5])} in the form")
            lab.answer(who, item, values)
        except AnswerError as exc:
            self._show(session, status=HTTPStatus.BAD_REQUEST, error=f"Not stored: {exc}", item_key=item.item,
                       values=[v or None for v in values])
            return
        progress = lab.progress(who)
        self.app.on_event(f"{who}: labelled item {item.position} ({progress.labelled} of {progress.total})")
        self._redirect()

    def _start(self, session: Session, form: dict[str, str]) -> None:
        if self.app.annotator is not None:
            raise Refused(HTTPStatus.BAD_REQUEST, f"this server labels as {self.app.annotator} (--annotator)")
        try:
            name = check_annotator(form.get("annotator", ""))
        except AnswerError as exc:
            self._show(session, status=HTTPStatus.BAD_REQUEST, error=str(exc))
            return
        self.app.start(self._token() or "", session, name)
        self.app.on_event(f"{session.annotator}: started")
        self._redirect()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: AnnotateApp) -> None:
        self.app = app
        if ":" in address[0]:
            import socket

            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)


@dataclass
class AnnotateServer:
    """A bound, not yet serving, labelling server: `serve_forever()` until `shutdown()`."""

    httpd: _Server
    app: AnnotateApp

    @property
    def url(self) -> str:
        host = self.app.host
        shown = "127.0.0.1" if host == "0.0.0.0" else f"[{host}]" if ":" in host else host
        if host == "::":
            shown = "[::1]"
        return f"http://{shown}:{self.app.port}/"

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.2)

    def shutdown(self) -> None:
        self.httpd.shutdown()

    def close(self) -> None:
        self.httpd.server_close()


def make_server(labelling: Labelling, *, host: str = "127.0.0.1", port: int = 8765, annotator: str | None = None,
                on_event: Callable[[str], None] | None = None) -> AnnotateServer:
    """Bind the server; UsageError (exit 2) for a port in use or a host that is not this machine's."""
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port} is not a TCP port: give 1-65535, or 0 for any free port")
    try:
        app = AnnotateApp(labelling, host=host, annotator=annotator, on_event=on_event)
    except AnswerError as exc:
        raise UsageError(f"--annotator: {exc}") from None
    try:
        httpd = _Server((host, port), app)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(f"port {port} on {host} is already in use: pass another --port "
                             "(or --port 0 for any free port)") from None
        if exc.errno == errno.EACCES:
            raise UsageError(f"no permission to listen on port {port}: pass a --port above 1023") from None
        raise UsageError(f"cannot listen on {host}:{port} ({exc.strerror or exc}): pass a --host of this "
                         "machine, e.g. 127.0.0.1") from None
    app.port = int(httpd.server_address[1])
    return AnnotateServer(httpd, app)
