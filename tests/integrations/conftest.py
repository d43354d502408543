"""The frameworks' standard suites have ``async def`` tests without a marker (they expect pytest-asyncio's
auto mode); mark those collected here, so the rest of the suite keeps pytest-asyncio's strict mode."""

from __future__ import annotations

import inspect

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector, name, obj):
    if inspect.iscoroutinefunction(obj) and name.startswith("test"):
        marks = getattr(obj, "pytestmark", [])
        if not any(m.name == "asyncio" for m in marks):
            pytest.mark.asyncio(obj)
    return None
