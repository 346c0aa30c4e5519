"""Workflow definitions: agents, stages and flow as data (YAML or JSON), checked, then run by the engine."""
