"""Shared pytest setup: fixture modules per resource (models, model server, gateway)."""

pytest_plugins = [
    "tests.fixtures.models",
    "tests.fixtures.modelserver",
    "tests.fixtures.gateway",
]
