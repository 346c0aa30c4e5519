"""The API's OpenAPI 3.1 document, written by spectree from the models the views use.

Each API view declares its contract with `@documented(...)`: the pydantic models of its
query string, headers and body (web/schemas.py) and of each answer (web/responses.py).
spectree turns those declarations into the document, so there is no hand-kept copy.

The views read and validate their input themselves (with the same models, and with the
error codes clients already rely on), so spectree is used here only to write the
document: its wrapper calls the view and returns the response untouched, which also
keeps a streamed event stream streaming.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from spectree import Response, SecurityScheme, SecuritySchemeData, SpecTree
from spectree.models import SecureType
from spectree.plugins.flask_plugin import FlaskPlugin
from spectree.utils import get_model_key

from web.responses import ErrorBody

TITLE = "taskapp API"
DESCRIPTION = (
    "Submit multi-step LLM agent runs, follow them live, read their steps, costs and metrics. "
    "Authenticate with `Authorization: Bearer <api key>`; a team sees only its own runs. "
    'Errors are `{"error": {"code", "message", "details"}}`.'
)
# Every operation that reads PostgreSQL, Redis or the broker answers 503 + Retry-After while one is down.
DEPENDENCY_DOWN = 503


class _DocumentOnly(FlaskPlugin):
    """spectree's Flask plugin without its request and response handling: the view runs as written."""

    def validate(
        self,
        func: Callable[..., Any],
        query: Any,
        json: Any,
        form: Any,
        headers: Any,
        cookies: Any,
        resp: Any,
        before: Any,
        after: Any,
        validation_error_status: int,
        skip_validation: bool,
        force_resp_serialize: bool,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        return func(*args, **kwargs)


spec = SpecTree(
    backend=_DocumentOnly,
    mode="strict",  # only the operations declared with @documented (not the HTML pages)
    annotations=False,
    title=TITLE,
    description=DESCRIPTION,
    version="1",
    openapi_version="3.1.0",
    naming_strategy=lambda model: model.__name__,
    nested_naming_strategy=lambda _parent, child: child,
    validation_error_model=ErrorBody,
    security_schemes=[
        SecurityScheme(
            name="apiKey",
            data=SecuritySchemeData(type=SecureType.HTTP, scheme="bearer", description="a team's API key"),
        )
    ],
    security={"apiKey": []},
)


class Answers(Response):
    """A spectree Response that also names the media type of a body that is not JSON."""

    def __init__(self, media_types: Mapping[int, str], **code_models: Any) -> None:
        super().__init__(**code_models)
        self.statuses = [int(code.removeprefix("HTTP_")) for code in code_models]
        self.media_types = dict(media_types)

    def generate_spec(self, naming_strategy: Callable[[Any], str] = get_model_key) -> dict[str, Any]:
        responses = super().generate_spec(naming_strategy)
        for status, media_type in self.media_types.items():
            responses[str(status)]["content"] = {media_type: {}}
        return responses


def answers(
    status: int,
    model: type | None = None,
    *,
    errors: Iterable[int] = (),
    media_type: str | None = None,
    also: Mapping[int, type | None] | None = None,
    dependencies: bool = True,
) -> Answers:
    """The statuses an operation answers with: its success (a model, or a media type that is not JSON),
    its errors (an ErrorBody each; 503 too when it needs a dependency) and `also`, statuses with
    bodies of their own."""
    codes: dict[str, Any] = {f"HTTP_{status}": model}
    for code in (*errors, *((DEPENDENCY_DOWN,) if dependencies else ())):
        codes[f"HTTP_{code}"] = ErrorBody
    for code, other in (also or {}).items():
        codes[f"HTTP_{code}"] = other
    return Answers({status: media_type} if media_type else {}, **codes)


def documented(*, resp: Answers, public: bool = False, **declared: Any) -> Callable[[Callable], Callable]:
    """Declare a view's contract in the document (`query`, `headers`, `json`, `tags`; `public`: no API key)."""
    # spectree documents a 422 for its own request validation, which these views do not use:
    # point it at a status the operation declares already (one with a model), so none is made up.
    with_body = [s for s in resp.statuses if s >= 400] or [s for s in resp.statuses if s not in resp.media_types]

    def decorate(view: Callable) -> Callable:
        return spec.validate(
            resp=resp,
            security=[] if public else None,
            skip_validation=True,
            validation_error_status=with_body[0],
            operation_id=view.__name__,
            **declared,
        )(view)

    return decorate


def document() -> dict[str, Any]:
    """The OpenAPI document, written once per process from the app's routes (needs an app context)."""
    return spec.spec
