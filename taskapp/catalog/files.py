"""Reading definition files: one file, or the deployer's directory or package (WORKFLOWS_PATH).

A directory (or a package's directory) holds `*.yaml`, `*.yml` and `*.json` definitions and
`*.py` modules; the modules are imported first, so the tools they register with
`taskapp.tools.tool` are known when the definitions that use them are checked.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import sys
from collections.abc import Collection
from pathlib import Path
from typing import Any

import yaml

from taskapp import tools as tool_registry
from taskapp.domain.definitions.checks import Definition, DefinitionError, check_definition
from taskapp.domain.definitions.schemas import Problem

DEFINITION_SUFFIXES = (".yaml", ".yml", ".json")


class DefinitionFileError(RuntimeError):
    """Files that cannot be used: each problem names its file, the path inside it and the reason."""

    def __init__(self, errors: list[tuple[str, Problem]]) -> None:
        self.errors = errors
        lines = [f"{file}: {p.path or '(top)'}: {p.reason}" for file, p in errors]
        super().__init__("bad workflow definition file(s):\n  " + "\n  ".join(lines))


def read_document(path: Path) -> Any:
    """A file's document (YAML or JSON by its suffix); DefinitionFileError when it does not parse."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionFileError([(str(path), Problem("", f"cannot be read: {exc}"))]) from None
    try:
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f"line {mark.line + 1}, column {mark.column + 1}"
        raise DefinitionFileError(
            [(str(path), Problem(where, f"does not parse: {str(exc).splitlines()[0]}"))]
        ) from None


def check_file(path: Path, *, models: Collection[str], shared: bool) -> Definition:
    document = read_document(path)
    try:
        return check_definition(document, models=models, tools=tool_registry.specs(), shared=shared)
    except DefinitionError as exc:
        raise DefinitionFileError([(str(path), p) for p in exc.problems]) from None


def load_path(spec: str, *, models: Collection[str]) -> list[Definition]:
    """Every definition in the deployer's directories or packages (comma-separated), checked as
    shared workflows; a name defined twice is an error."""
    directories = [_directory_of(part.strip()) for part in spec.split(",") if part.strip()]
    for directory in directories:
        for module in sorted(directory.glob("*.py")):
            if not module.name.startswith("_"):
                _import_file(module)
    errors: list[tuple[str, Problem]] = []
    found: dict[str, tuple[Path, Definition]] = {}
    files = [p for d in directories for p in sorted(d.iterdir()) if p.suffix in DEFINITION_SUFFIXES and p.is_file()]
    for path in files:
        try:
            definition = check_file(path, models=models, shared=True)
        except DefinitionFileError as exc:
            errors += exc.errors
            continue
        if definition.name in found:
            errors.append(
                (str(path), Problem("name", f"{definition.name!r} is defined in {found[definition.name][0]} too"))
            )
            continue
        found[definition.name] = (path, definition)
    if errors:
        raise DefinitionFileError(errors)
    return [d for _, d in found.values()]


def _directory_of(spec: str) -> Path:
    path = Path(spec)
    if path.is_dir():
        return path.resolve()
    try:
        module = importlib.import_module(spec)
    except ImportError as exc:
        raise DefinitionFileError(
            [("WORKFLOWS_PATH", Problem("", f"{spec!r} is neither a directory nor an importable module: {exc}"))]
        ) from None
    locations = list(getattr(module, "__path__", []))
    if not locations:
        raise DefinitionFileError([("WORKFLOWS_PATH", Problem("", f"module {spec!r} is not a package directory"))])
    return Path(locations[0]).resolve()


def _import_file(path: Path) -> None:
    """Import a tools module by its file (once per process; its @tool decorators register)."""
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    name = f"taskapp_workflows_{digest}.{path.stem}"
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise DefinitionFileError([(str(path), Problem("", "cannot be imported"))])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise DefinitionFileError(
            [(str(path), Problem("", f"importing it failed: {type(exc).__name__}: {exc}"))]
        ) from exc
