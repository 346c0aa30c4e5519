"""JSON errors for the API: `{"error": {"code", "message", "details"}}`, never an HTML 500."""

from __future__ import annotations

import logging
import traceback
from typing import Any

from flask import Flask, g, render_template, request
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from taskapp.outages import TRANSIENT_ERRORS, dependency_of
from web.responses import ErrorBody, ErrorInfo, reply

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details
        self.headers = headers or {}


def error_response(status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None):
    response = reply(ErrorBody(error=ErrorInfo(code=code, message=message, details=details)), status)
    response.headers.update(headers or {})
    return response


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


TITLES = {
    400: "That request could not be read",
    401: "Please sign in",
    403: "Not allowed",
    404: "Page not found",
    405: "Not allowed here",
    410: "Gone",
    413: "Too large",
    429: "Too many requests",
    500: "Something went wrong",
    503: "Temporarily unavailable",
}
HINTS = {
    404: (
        "There is no such page, or it belongs to another team: runs, workflows and versions "
        "are shown to their own team only."
    ),
    500: "The error has been logged. Try again, or go back to the runs list.",
}


def error_page(status: int, message: str | None = None, headers: dict[str, str] | None = None):
    """A styled page for a person (with the site's navigation and a way back), never a bare error."""
    title = TITLES.get(status, "Error")
    if "caller" not in g and status < 500:  # a URL no view matched: still show a signed-in person their way
        from web.auth import session_caller

        try:
            g.caller = session_caller()
        except Exception:  # noqa: BLE001 (the page must render even if the session cannot be read)
            g.caller = None
    try:
        body = render_template(
            "error.html", status=status, title=title, message=message or HINTS.get(status, ""), hint=HINTS.get(status)
        )
    except Exception:
        log.exception("could not render the error page for %s", status)
        body = f"{title}. {message or ''}"
    return body, status, headers or {}


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        if not _wants_json():
            if exc.code is None or exc.code < 400:
                return exc
            described = exc.description if exc.description != type(exc).description else None
            return error_page(exc.code, described, {k: v for k, v in exc.get_headers() if k == "Allow"})
        code = (exc.name or "error").lower().replace(" ", "_")
        return error_response(exc.code or 500, code, exc.description or exc.name)

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(exc: RequestEntityTooLarge):
        limit = app.config["MAX_CONTENT_LENGTH"]
        message = f"the request body is larger than the limit of {limit} bytes"
        if not _wants_json():
            return error_page(413, message)
        return error_response(413, "request_entity_too_large", message, {"limit_bytes": limit})

    def _dependency_down(exc: Exception):
        # A restart of PostgreSQL or Redis: tell the client when to come back, not "500".
        part = dependency_of(exc) or "a dependency"
        log.warning("%s unavailable on %s %s: %s", part, request.method, request.path, type(exc).__name__)
        message = (
            f"{part} is unavailable right now; try again after Retry-After seconds "
            "(with the same Idempotency-Key, a retried submission never runs twice)"
        )
        if _wants_json():
            return error_response(503, "unavailable", message, {"dependency": part}, {"Retry-After": "5"})
        return error_page(
            503, f"{part} is unavailable right now; please try again in a few seconds.", {"Retry-After": "5"}
        )

    for error in TRANSIENT_ERRORS:
        app.register_error_handler(error, _dependency_down)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        if isinstance(exc, DBAPIError):
            # PostgreSQL's DETAIL can quote a row's values: log its primary message, the SQLSTATE and
            # where it was raised, never the statement's parameters or the detail.
            diag = getattr(exc.orig, "diag", None)
            where = "".join(traceback.format_tb(exc.__traceback__)[-3:])
            log.error(
                "unhandled database error on %s %s: %s: %s (SQLSTATE %s)\n%s",
                request.method,
                request.path,
                type(exc.orig).__name__,
                getattr(diag, "message_primary", None),
                getattr(exc.orig, "sqlstate", None),
                where,
            )
        else:
            log.exception("unhandled error on %s %s", request.method, request.path)
        if _wants_json():
            return error_response(500, "internal_error", "internal error; it has been logged")
        return error_page(500)
