"""A module that is imported when first used: :func:`lazy_import` stands in for ``import name as alias``."""

from __future__ import annotations

import importlib
from typing import Any


class _LazyModule:
    """Imports ``name`` on the first attribute access, then rebinds ``alias`` in ``namespace`` to the module
    itself (so later uses cost nothing extra)."""

    def __init__(self, name: str, namespace: dict, alias: str):
        self._name, self._namespace, self._alias = name, namespace, alias

    def __getattr__(self, attr: str) -> Any:
        module = importlib.import_module(self._name)
        self._namespace[self._alias] = module
        return getattr(module, attr)


def lazy_import(name: str, namespace: dict, alias: str) -> Any:
    """A stand-in for module ``name`` bound to ``alias`` in ``namespace`` (a module's ``globals()``)."""
    return _LazyModule(name, namespace, alias)
