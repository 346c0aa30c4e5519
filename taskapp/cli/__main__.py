"""`python -m taskapp.cli`: the `taskapp` command."""

from taskapp.cli import run

run()
