"""Who may talk to the web service, and the headers every answer carries.

`Guard` is one pure ASGI middleware (it leaves request bodies streaming):
- a token, when the service has one: `Authorization: Bearer TOKEN` for the API, or the cookie the
  login page sets (an HMAC of the token, never the token itself); pages redirect to /login, the API
  answers 401. /login and /healthz are open.
- cross-site writes refused: a POST/DELETE whose Origin is not this host is 403 (a page elsewhere
  cannot make a visitor's browser upload or delete).
- on every answer: a Content-Security-Policy with no external source (scripts only with this
  answer's nonce), X-Content-Type-Options, Referrer-Policy, frame-ancestors 'none', no caching of
  anything private.
Host names are checked before this by Starlette's TrustedHostMiddleware (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import secrets
from urllib.parse import quote, urlsplit

from starlette.requests import cookie_parser
from starlette.responses import JSONResponse, RedirectResponse, Response

log = logging.getLogger(__name__)
AUTH_COOKIE = "dfpanel_auth"
VISITOR_COOKIE = "dfpanel_visitor"
TOKEN_ENV = "DFPANEL_SERVE_TOKEN"
OPEN_PATHS = ("/login", "/healthz", "/favicon.ico")
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")
WRONG_TOKEN_DELAY = 0.5  # seconds before answering a wrong token


def session_value(token: str) -> str:
    """The login cookie's value: proves the token was given, without being the token."""
    return hmac.new(token.encode(), b"dfpanel-serve-session", hashlib.sha256).hexdigest()


def owner_of(visitor: str | None) -> str | None:
    """What a job keeps of the visitor cookie that made it (a hash: job.json never holds the cookie)."""
    return hashlib.sha256(visitor.encode()).hexdigest()[:32] if visitor else None


def is_loopback(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    return host.strip("[]") in ("0.0.0.0", "::", "")


def csp(nonce: str, docs: bool = False) -> str:
    scripts = "'self'" if docs else f"'nonce-{nonce}'"
    return ("default-src 'none'; "
            f"script-src {scripts}; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")


def header(scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", []):
        if k == name:
            return v.decode("latin-1")
    return None


class Guard:
    def __init__(self, app, token: str | None = None, allowed_hosts: list[str] | None = None):
        self.app = app
        self.token = token
        # names a page of this service may be served under (a reverse proxy's public name), for Origin
        self.own_names = {h.strip("[]").lower() for h in (allowed_hosts or []) if "*" not in h}
        self.warned_proxy = False
        self.session = session_value(token) if token else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        nonce = secrets.token_urlsafe(16)
        scope.setdefault("state", {})["nonce"] = nonce
        path = scope["path"]
        docs = path == "/docs" or path.startswith("/docs/")

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"content-security-policy"]
                headers += [
                    (b"content-security-policy", csp(nonce, docs).encode()),
                    (b"x-content-type-options", b"nosniff"),
                    # same-origin, not no-referrer: with no-referrer a browser sends `Origin: null` on its own
                    # form posts, which the cross-site check could not tell from a foreign page's
                    (b"referrer-policy", b"same-origin"),
                    (b"x-frame-options", b"DENY"),
                    (b"cross-origin-opener-policy", b"same-origin"),
                ]
                if not docs and not any(k.lower() == b"cache-control" for k, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message = dict(message, headers=headers)
            await send(message)

        if not self.token and not self.warned_proxy and header(scope, b"x-forwarded-for"):
            self.warned_proxy = True
            log.warning("serve: requests arrive through a proxy but no token is set: anyone who reaches the proxy "
                        "can use this service; start it with --token")
        refusal, delay = self.refuse(scope)
        if refusal is None:
            return await self.app(scope, receive, send_with_headers)
        if delay:
            await asyncio.sleep(delay)
        await refusal(scope, receive, send_with_headers)

    def refuse(self, scope) -> tuple[Response | None, float]:
        """The answer to a request that may not go on (None if it may), and how long to wait first."""
        method, path = scope["method"], scope["path"]
        if method not in ("GET", "HEAD", "OPTIONS"):
            origin = header(scope, b"origin")
            if origin and not self.same_site(origin, header(scope, b"host")):
                return _detail(403, "cross-site request refused: this service takes uploads from its own page only"), 0.0
        if not self.token or path in OPEN_PATHS:
            return None, 0.0
        auth = header(scope, b"authorization") or ""
        scheme, _, given = auth.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token.encode()):
            return None, 0.0
        cookie = cookie_parser(header(scope, b"cookie") or "").get(AUTH_COOKIE, "")
        if cookie and hmac.compare_digest(cookie.encode(), self.session.encode()):
            return None, 0.0
        accept = header(scope, b"accept") or ""
        if method == "GET" and not path.startswith("/api/") and "text/html" in accept:
            target = path + ("?" + scope["query_string"].decode("latin-1") if scope.get("query_string") else "")
            return RedirectResponse("/login?next=" + quote(target, safe="/"), status_code=303), 0.0
        what = "wrong token" if given or cookie else "this service needs a token"
        answer = _detail(401, f"{what}: send the header 'Authorization: Bearer <token>' (the token the server was "
                              "started with)", {"www-authenticate": 'Bearer realm="dfpanel"'})
        return answer, WRONG_TOKEN_DELAY if given else 0.0

    def same_site(self, origin: str, host: str | None) -> bool:
        """The Origin of a write is this service: the Host it was sent to, or one of its own names."""
        if origin == "null":  # a sandboxed frame or a file:// page: not this service's page
            return False
        parts = urlsplit(origin)
        return parts.netloc == host or (parts.hostname or "").lower() in self.own_names


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this site only (never //other.host or a scheme)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _detail(status: int, detail: str, headers: dict | None = None) -> JSONResponse:
    """A refusal as the app's own errors look: {"detail": one line}."""
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)
