"""The Examples sections of the quantizer docstrings run."""

from __future__ import annotations

import doctest
import importlib

import pytest


# By module name: ``vqdb.presets`` as an attribute is the public *function* ``vqdb.presets()`` once the lazy
# loader has resolved it, so the module is taken from the import system, not from the package attribute.
@pytest.mark.parametrize("name", ["vqdb.quantizers.turbo", "vqdb.quantizers.qjl", "vqdb.presets"])
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
