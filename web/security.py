"""The web process's defences, each from a well-kept library.

- Talisman: security headers on every response (a content security policy with no
  inline script, `X-Content-Type-Options`, `frame-ancestors`), and `Secure` cookies.
- Flask-WTF's CSRFProtect: every form post carries a token; a missing or empty token
  never matches. The JSON API is exempt for bearer keys (a cross-site page cannot set
  that header) and checked for cookie sessions by `web.auth`.
- Flask-Limiter: a request rate per team (per client address before sign-in, and on the
  sign-in posts), kept in Redis so it holds across web processes; 429 with `Retry-After`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from flask import Blueprint, Flask, request
from flask_limiter import Limiter
from flask_limiter.errors import RateLimitExceeded
from flask_talisman import Talisman
from flask_wtf.csrf import CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

from taskapp.keys import RATE_LIMIT_PREFIX
from taskapp.settings import Settings
from web.errors import error_response

csrf = CSRFProtect()

CONTENT_SECURITY_POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def address_key() -> str:
    """The client's address (behind PROXY_HOPS proxies, the one they saw)."""
    return f"addr:{request.remote_addr}"


def init_security(
    app: Flask, settings: Settings, limited: list[Blueprint], caller_key: Callable[[], str], sign_in_views: list[str]
) -> None:
    """Headers and CSRF for every page; the per-caller rate limit (`caller_key`) on the `limited`
    blueprints (the API), and a per-address one on the sign-in posts (`sign_in_views`)."""
    if settings.proxy_hops:  # the address and scheme the proxies in front saw, for limits and cookies
        hops = settings.proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    app.config.update(
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session it belongs to
        WTF_CSRF_SSL_STRICT=settings.session_cookie_secure,
        RATELIMIT_STORAGE_URI=settings.redis_url or "memory://",
        RATELIMIT_STORAGE_OPTIONS={"socket_timeout": 1, "socket_connect_timeout": 1},
    )
    Talisman(
        app,
        force_https=False,
        strict_transport_security=settings.session_cookie_secure,
        session_cookie_secure=settings.session_cookie_secure,
        session_cookie_http_only=True,
        frame_options="DENY",
        content_security_policy=CONTENT_SECURITY_POLICY,
        referrer_policy="same-origin",
    )
    csrf.init_app(app)
    # headers_enabled would stamp a Retry-After on every answer (and lengthen our own 503s'); the
    # 429 below says when to come back instead.
    # Redis down: each process counts on its own meanwhile (never a 500, never unlimited).
    limiter = Limiter(
        key_func=caller_key,
        headers_enabled=False,
        swallow_errors=True,
        in_memory_fallback_enabled=True,
        strategy="fixed-window",
        key_prefix=RATE_LIMIT_PREFIX,
    )
    for blueprint in limited:
        csrf.exempt(blueprint)  # bearer keys need no token; cookie sessions are checked in web.auth
        limiter.shared_limit(settings.api_rate_limit, scope="api")(blueprint)  # one budget for all of it
    for endpoint in sign_in_views:  # guessing keys or links costs a database read each: slow it down
        # (flask-limiter types the limited view as sync or async; these views are sync)
        app.view_functions[endpoint] = limiter.limit(  # type: ignore[assignment]
            settings.sign_in_rate_limit, key_func=address_key, methods=["POST"]
        )(app.view_functions[endpoint])
    limiter.init_app(app)

    @app.errorhandler(RateLimitExceeded)
    def _rate_limited(exc: RateLimitExceeded):
        current = limiter.current_limit
        retry_after = max(1, math.ceil(current.reset_at - time.time())) if current else 1
        return error_response(
            429,
            "rate_limited",
            f"too many requests (limit {exc.description}); try again after Retry-After seconds",
            {"limit": exc.description},
            {"Retry-After": str(retry_after)},
        )
