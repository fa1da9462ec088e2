"""Shared test plumbing. Integration tests run against the real lab, brought up once."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config, items):
    """Tests marked `last` (they take the lab down) run after everything else."""
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)


def pytest_configure(config):
    config.addinivalue_line("markers", "last: runs after every other test")
    if os.environ.get("CI") and os.geteuid() != 0:
        raise pytest.UsageError("CI runs the lab tests, which need root")
