"""Workflow versions in PostgreSQL: pushed by teams, synced from the deployer's files, pinned by runs.

A version is immutable once stored, so a run that names it is decided by the same
definition on every worker for its whole life, whatever is pushed or deployed meanwhile;
workers keep the definitions they have read in memory by version id for the same reason.
A team sees its own workflows and the shared ones; its own name shadows a shared one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Integer, bindparam, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from taskapp.domain.agents import Agent, agent_id_of_lane
from taskapp.domain.definitions.checks import Definition, load_stored
from taskapp.store.models import Run, Step, Workflow, WorkflowVersion


class UnknownWorkflow(LookupError):
    """No workflow of that name for this team (none, another team's, or retired)."""


class UnknownVersion(LookupError):
    """The workflow exists but has no such version."""


class UnknownAgent(LookupError):
    """A step names an agent its run's definition does not have."""


@dataclass(frozen=True)
class Listed:
    workflow: Workflow
    latest: WorkflowVersion

    @property
    def scope(self) -> str:
        return "shared" if self.workflow.team_id is None else "team"


def push(session: Session, team_id: uuid.UUID | None, definition: Definition) -> tuple[WorkflowVersion, bool]:
    """Store `definition` as the workflow's next version (False: it equals the latest, which
    is returned). The workflow's row is locked, so two pushes number their versions in turn."""
    workflow = _lock_or_create(session, team_id, definition.name)
    latest = _version(session, workflow.id, workflow.latest_version) if workflow.latest_version else None
    if latest is not None and latest.content_hash == definition.content_hash and workflow.retired_at is None:
        return latest, False
    workflow.latest_version += 1
    workflow.retired_at = None
    version = WorkflowVersion(
        id=uuid.uuid4(),
        workflow_id=workflow.id,
        version=workflow.latest_version,
        content_hash=definition.content_hash,
        definition=definition.document,
    )
    session.add(version)
    session.flush()
    return version, True


def sync_shared(session: Session, definitions: list[Definition]) -> list[tuple[str, int, bool]]:
    """The deployer's files as shared versions (a changed file makes a new version): (name, version, new)."""
    done = []
    for definition in sorted(definitions, key=lambda d: d.name):  # one lock order for every process
        version, created = push(session, None, definition)
        done.append((definition.name, version.version, created))
    return done


def resolve(session: Session, team_id: uuid.UUID, name: str, version: int | None = None) -> WorkflowVersion:
    """The version a new run of `name` starts with: the given one, else the latest."""
    found = session.get(WorkflowVersion, resolve_id(session, team_id, name, version))
    assert found is not None  # resolve_id just read it
    return found


def resolve_id(session: Session, team_id: uuid.UUID, name: str, version: int | None = None) -> uuid.UUID:
    """The id of the version `resolve` names, in one statement (a run's submission needs no more:
    the definition itself comes from this process's cache)."""
    row = session.execute(_RESOLVE, {"name": name, "team_id": team_id, "version": version}).first()
    if row is None:
        raise UnknownWorkflow(name)
    if row[1] is None:
        raise UnknownVersion(f"workflow {name!r} has no version {version} (latest: {row[0]})")
    return row[1]


def _resolve_statement() -> Any:
    """Built once (it runs for every submitted run): the visible workflow, the team's own first
    (it shadows a shared one), joined to the version asked for or its latest."""
    workflow = (
        select(Workflow.id, Workflow.latest_version)
        .where(
            Workflow.name == bindparam("name"),
            or_(Workflow.team_id == bindparam("team_id"), Workflow.team_id.is_(None)),
            Workflow.retired_at.is_(None),
        )
        .order_by(Workflow.team_id.is_(None))
        .limit(1)
        .subquery()
    )
    number = func.coalesce(bindparam("version", type_=Integer), workflow.c.latest_version)
    return (
        select(workflow.c.latest_version, WorkflowVersion.id)
        .select_from(workflow)
        .outerjoin(
            WorkflowVersion, (WorkflowVersion.workflow_id == workflow.c.id) & (WorkflowVersion.version == number)
        )
    )


_RESOLVE = _resolve_statement()


def visible(session: Session, team_id: uuid.UUID) -> list[Listed]:
    """The workflows a team may run: its own, and the shared ones it does not shadow, by name."""
    rows = session.execute(
        select(Workflow, WorkflowVersion)
        .join(
            WorkflowVersion,
            (WorkflowVersion.workflow_id == Workflow.id) & (WorkflowVersion.version == Workflow.latest_version),
        )
        .where(or_(Workflow.team_id == team_id, Workflow.team_id.is_(None)), Workflow.retired_at.is_(None))
    ).all()
    by_name: dict[str, Listed] = {}
    for workflow, latest in rows:
        if workflow.name not in by_name or workflow.team_id is not None:
            by_name[workflow.name] = Listed(workflow, latest)
    return [by_name[n] for n in sorted(by_name)]


def history(session: Session, team_id: uuid.UUID, name: str) -> tuple[Workflow, list[WorkflowVersion]]:
    """A visible workflow and all its versions, newest first."""
    workflow = _visible(session, team_id, name)
    if workflow is None:
        raise UnknownWorkflow(name)
    versions = session.scalars(
        select(WorkflowVersion)
        .where(WorkflowVersion.workflow_id == workflow.id)
        .order_by(WorkflowVersion.version.desc())
    ).all()
    return workflow, list(versions)


def retire(session: Session, team_id: uuid.UUID, name: str) -> Workflow | None:
    """Retire the team's own workflow: no new runs; runs in flight keep their version. None: not the team's."""
    workflow = session.scalar(
        select(Workflow).where(Workflow.team_id == team_id, Workflow.name == name).with_for_update()
    )
    if workflow is None:
        return None
    if workflow.retired_at is None:
        workflow.retired_at = datetime.now(UTC)
    return workflow


def shared_name_exists(session: Session, name: str) -> bool:
    return session.scalar(select(Workflow.id).where(Workflow.team_id.is_(None), Workflow.name == name)) is not None


def definition_of(session: Session, version_id: uuid.UUID) -> Definition:
    """A stored version's definition (read once per process: versions never change)."""
    cached = _definitions.get(version_id)
    if cached is None:
        row = session.execute(
            select(WorkflowVersion.definition, WorkflowVersion.version).where(WorkflowVersion.id == version_id)
        ).first()
        if row is None:
            raise UnknownVersion(f"no workflow version {version_id}")
        _numbers[version_id] = row.version
        cached = _definitions.setdefault(version_id, load_stored(row.definition))
    return cached


def definition_of_run(session: Session, run: Run) -> Definition:
    """The definition a run is decided by: its pinned version, or (a run stored before versions)
    the latest shared version of its workflow's name."""
    if run.workflow_version_id is not None:
        return definition_of(session, run.workflow_version_id)
    version = session.scalar(
        select(WorkflowVersion.id)
        .join(Workflow, Workflow.id == WorkflowVersion.workflow_id)
        .where(Workflow.team_id.is_(None), Workflow.name == run.workflow)
        .order_by(WorkflowVersion.version.desc())
        .limit(1)
    )
    if version is None:
        raise UnknownWorkflow(run.workflow)
    return definition_of(session, version)


def agent_of_step(session: Session, step: Step) -> Agent:
    """The agent a step calls, as its run's pinned definition defines it. On every batch's path:
    a lane names its agent by the hash of everything that shapes its calls, so the agent found
    for a lane once is that lane's agent for good, and later batches of it read nothing."""
    cached = _agents_by_lane.get(step.lane) if step.lane else None
    if cached is not None:
        return cached
    pinned = session.execute(select(Run.workflow_version_id, Run.workflow).where(Run.id == step.run_id)).one()
    if pinned.workflow_version_id is not None:
        definition = definition_of(session, pinned.workflow_version_id)
    else:
        definition = definition_of_run(session, Run(workflow=pinned.workflow))
    agent = definition.agents.get(step.agent)
    if agent is None:
        raise UnknownAgent(f"workflow {pinned.workflow!r} has no agent {step.agent!r}")
    if step.lane and agent_id_of_lane(step.lane) == agent.id:
        _agents_by_lane[step.lane] = agent
    return agent


def version_numbers(session: Session, version_ids: list[uuid.UUID | None]) -> dict[uuid.UUID, int]:
    """The numbers of these versions (what a run's JSON shows of its pinned version), by id."""
    wanted = {v for v in version_ids if v is not None}
    missing = wanted - _numbers.keys()  # a version's number never changes: read once per process
    if missing:
        rows = session.execute(
            select(WorkflowVersion.id, WorkflowVersion.version).where(WorkflowVersion.id.in_(missing))
        )
        _numbers.update({version_id: number for version_id, number in rows})
    return {v: _numbers[v] for v in wanted if v in _numbers}


_definitions: dict[uuid.UUID, Definition] = {}
_agents_by_lane: dict[str, Agent] = {}
_numbers: dict[uuid.UUID, int] = {}


def _visible(session: Session, team_id: uuid.UUID, name: str) -> Workflow | None:
    rows = session.scalars(
        select(Workflow).where(
            Workflow.name == name,
            or_(Workflow.team_id == team_id, Workflow.team_id.is_(None)),
            Workflow.retired_at.is_(None),
        )
    ).all()
    own = [w for w in rows if w.team_id is not None]
    found = own or list(rows)
    return found[0] if found else None


def _version(session: Session, workflow_id: uuid.UUID, number: int) -> WorkflowVersion | None:
    return session.scalar(
        select(WorkflowVersion).where(WorkflowVersion.workflow_id == workflow_id, WorkflowVersion.version == number)
    )


def _lock_or_create(session: Session, team_id: uuid.UUID | None, name: str) -> Workflow:
    where = Workflow.team_id.is_(None) if team_id is None else Workflow.team_id == team_id
    statement = pg_insert(Workflow).values(id=uuid.uuid4(), team_id=team_id, name=name, latest_version=0)
    if team_id is None:
        statement = statement.on_conflict_do_nothing(index_elements=["name"], index_where=Workflow.team_id.is_(None))
    else:
        statement = statement.on_conflict_do_nothing(
            index_elements=["team_id", "name"], index_where=Workflow.team_id.is_not(None)
        )
    session.execute(statement)
    workflow = session.scalar(select(Workflow).where(where, Workflow.name == name).with_for_update())
    assert workflow is not None
    session.refresh(workflow)
    return workflow
