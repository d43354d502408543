"""The Examples sections of the quantizer docstrings run."""

from __future__ import annotations

import doctest

import pytest

import vqdb.presets
import vqdb.quantizers.qjl
import vqdb.quantizers.turbo


@pytest.mark.parametrize("module", [vqdb.quantizers.turbo, vqdb.quantizers.qjl, vqdb.presets])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
