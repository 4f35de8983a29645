"""Who may talk to the server: the Host header, the Origin header and a token (pure ASGI).

Policy (the README's serving section states it):

* **Host**: a request's Host must be loopback (``localhost``, 127.0.0.1, ::1), the address
  the server is bound to, or a name listed with ``--allow-host`` (``*``: any). When bound
  to every interface (0.0.0.0, ::) any IP address is accepted too. A web page reaching a
  loopback server through DNS rebinding sends its own domain name as Host, so it is
  refused (403) before any route runs.
* **Origin**: a request carrying an Origin header that is not the server's own
  (``http://`` + the request's Host) is refused (403): a cross-site form POST is a "simple"
  request a browser sends without asking, so any page a user visits could otherwise make
  the server work.
* **Token**: off loopback a token is required (``--token``, or ``HEADSTART_SERVE_TOKEN``;
  generated and printed with the page's URL when not given, as Jupyter does), unless the
  user opts out with ``--no-token``. It is accepted as ``Authorization: Bearer <token>``,
  ``?token=<token>``, or the ``headstart_token`` cookie, which the page sets when opened
  through its URL (HttpOnly, SameSite=Strict). ``/health`` needs none (liveness probes);
  every other path does (401).

Example:
    >>> guard = AccessPolicy.for_bind("0.0.0.0", token="s3cret", allow_hosts=("pets.lan",))   # doctest: +SKIP
    >>> app = AccessMiddleware(create_app(predictor), guard)                                  # doctest: +SKIP
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import MutableMapping
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

from headstart.serve.limits import ASGIApp, Receive, Send, send_json

TOKEN_ENV = "HEADSTART_SERVE_TOKEN"
COOKIE = "headstart_token"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
OPEN_PATHS = frozenset({"/health"})


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def host_name(value: str) -> str:
    """The name in a Host header, without the port: 'a.lan:8000' -> 'a.lan', '[::1]:80' -> '::1'."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


@dataclass(frozen=True)
class AccessPolicy:
    """Which Hosts are accepted and which token (None: none needed)."""

    hosts: frozenset[str]
    any_host: bool = False  # --allow-host '*'
    any_ip: bool = False  # bound to every interface: any IP address as Host
    token: str | None = None

    @classmethod
    def for_bind(cls, bind: str, token: str | None = None, allow_hosts: tuple[str, ...] = ()) -> AccessPolicy:
        names = {h.strip().lower() for h in allow_hosts if h.strip()}
        wildcard = bind in ("0.0.0.0", "::", "")
        return cls(
            hosts=frozenset(LOOPBACK_NAMES | {host_name(bind)} | (names - {"*"})),
            any_host="*" in names,
            any_ip=wildcard,
            token=token,
        )

    def host_allowed(self, host: str) -> bool:
        name = host_name(host)
        return self.any_host or name in self.hosts or (self.any_ip and _is_ip(name))


def new_token() -> str:
    """A fresh token: 192 random bits, URL-safe."""
    return secrets.token_urlsafe(24)


def _headers(scope: MutableMapping[str, Any]) -> dict[bytes, bytes]:
    return {name.lower(): value for name, value in scope.get("headers") or []}


def presented_token(scope: MutableMapping[str, Any]) -> str | None:
    """The token a request carries (header, query or cookie), or None."""
    headers = _headers(scope)
    auth = headers.get(b"authorization", b"").decode("latin-1")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    query = parse_qs((scope.get("query_string") or b"").decode("latin-1")).get("token")
    if query:
        return query[0]
    cookie = SimpleCookie()
    try:
        cookie.load(headers.get(b"cookie", b"").decode("latin-1"))
    except Exception:  # noqa: BLE001 - a malformed cookie header carries no token
        return None
    return cookie[COOKIE].value if COOKIE in cookie else None


class AccessMiddleware:
    """Refuses requests by Host (403), Origin (403) and token (401) before the app sees them."""

    def __init__(self, app: ASGIApp, policy: AccessPolicy) -> None:
        self.app, self.policy = app, policy

    def refusal(self, scope: MutableMapping[str, Any]) -> tuple[int, str] | None:
        """(status, message) when the request may not go on, else None."""
        headers = _headers(scope)
        host = headers.get(b"host", b"").decode("latin-1")
        if not self.policy.host_allowed(host):
            return 403, f"Host {host_name(host)!r} is not this server's; list it with --allow-host if it is"
        origin = headers.get(b"origin")
        if origin is not None:
            parts = urlsplit(origin.decode("latin-1"))
            if parts.scheme not in ("http", "https") or (parts.netloc or "").lower() != host.strip().lower():
                return 403, "cross-origin requests are refused"
        if self.policy.token is None or scope.get("path") in OPEN_PATHS:
            return None
        given = presented_token(scope)
        if given is None or not secrets.compare_digest(given.encode(), self.policy.token.encode()):
            return 401, "a token is required: open the URL the server printed, or send 'Authorization: Bearer <token>'"
        return None

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = self.refusal(scope)
        if refused is not None:
            await send_json(send, refused[0], {"error": refused[1]})
            return
        if self.policy.token is None or b"token=" not in (scope.get("query_string") or b""):
            await self.app(scope, receive, send)
            return

        async def with_cookie(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":  # the page opened by its URL: later fetches carry the cookie
                cookie = f"{COOKIE}={self.policy.token}; HttpOnly; SameSite=Strict; Path=/".encode()
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie)]}
            await send(message)

        await self.app(scope, receive, with_cookie)
