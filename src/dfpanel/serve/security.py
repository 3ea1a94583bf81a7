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
import json
import logging
import secrets
from http.cookies import SimpleCookie
from urllib.parse import quote, urlsplit

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


def cookies_of(scope) -> dict[str, str]:
    raw = "; ".join(v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"cookie")
    jar = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:  # a malformed Cookie header is no login
        return {}
    return {k: m.value for k, m in jar.items()}


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
        refusal = self.refuse(scope)
        if refusal is not None:
            return await refusal(scope, receive, send_with_headers)
        return await self.app(scope, receive, send_with_headers)

    def refuse(self, scope):
        """An ASGI app answering a request that may not go on, else None."""
        method, path = scope["method"], scope["path"]
        if method not in ("GET", "HEAD", "OPTIONS"):
            origin = header(scope, b"origin")
            if origin and not self.same_site(origin, header(scope, b"host")):
                return _json(403, "cross-site request refused: this service takes uploads from its own page only")
        if not self.token or path in OPEN_PATHS:
            return None
        auth = header(scope, b"authorization") or ""
        scheme, _, given = auth.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token.encode()):
            return None
        cookie = cookies_of(scope).get(AUTH_COOKIE, "")
        if cookie and hmac.compare_digest(cookie.encode(), self.session.encode()):
            return None
        accept = header(scope, b"accept") or ""
        if method == "GET" and not path.startswith("/api/") and "text/html" in accept:
            target = path + ("?" + scope["query_string"].decode("latin-1") if scope.get("query_string") else "")
            return _redirect("/login?next=" + quote(target, safe="/"))
        what = "wrong token" if given or cookie else "this service needs a token"
        return _json(401, delay=WRONG_TOKEN_DELAY if given else 0.0, detail= f"{what}: send the header 'Authorization: Bearer <token>' (the token the server was started with)",
                     extra=[(b"www-authenticate", b'Bearer realm="dfpanel"')])

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


def _json(status: int, detail: str, extra: list | None = None, delay: float = 0.0):
    body = json.dumps({"detail": detail}).encode()

    async def app(scope, receive, send):
        if delay:
            await asyncio.sleep(delay)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                    + (extra or [])})
        await send({"type": "http.response.body", "body": body})

    return app


def _redirect(location: str):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 303,
                    "headers": [(b"location", location.encode("latin-1")), (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    return app
