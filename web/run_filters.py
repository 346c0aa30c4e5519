"""The runs list's filters, read from the query string (`/?status=failed&workflow=research`), for the
page and its JSON alike; a value that cannot be one is refused with a sentence saying why."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from taskapp.domain.status import RUN_STATUSES

WORKFLOW_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
PAGE_SIZE = 25


class BadFilter(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


@dataclass(frozen=True)
class RunFilters:
    status: str | None = None
    workflow: str | None = None
    cursor: str | None = None

    def query(self, **changes: str | None) -> str:
        """This list's query string with `changes` (None drops a key), for links and the poll."""
        values = {"status": self.status, "workflow": self.workflow, "cursor": self.cursor, **changes}
        kept = {k: v for k, v in values.items() if v}
        return "?" + urlencode(kept) if kept else ""


def read_filters(args: Mapping[str, str]) -> RunFilters:
    """Raises BadFilter naming the parameter and the values it may take."""
    status = (args.get("status") or "").strip() or None
    if status is not None and status not in RUN_STATUSES:
        raise BadFilter("status", f"status must be one of {', '.join(RUN_STATUSES)} (or left out), not {status[:40]!r}")
    workflow = (args.get("workflow") or "").strip() or None
    if workflow is not None and not WORKFLOW_NAME.fullmatch(workflow):
        raise BadFilter(
            "workflow",
            "workflow must be a workflow's name (lower-case letters, digits and _, starting with a letter, "
            f"at most 63), not {workflow[:40]!r}",
        )
    cursor = args.get("cursor") or None
    return RunFilters(status, workflow, cursor)
