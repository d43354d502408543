"""`vqdb warmup` (numba_cpu.warmup) compiles every numba kernel of the CPU backend, so that after
`make install` no kernel of an encode or a generic scan compiles in a user's process."""

from __future__ import annotations

import pytest

numba = pytest.importorskip("numba")

from numba.core.registry import CPUDispatcher  # noqa: E402

from vqdb.kernels import numba_cpu  # noqa: E402


def test_numba_cpu_warmup_compiles_every_kernel_of_the_module():
    numba_cpu.warmup()
    kernels = {name: f for name, f in vars(numba_cpu).items() if isinstance(f, CPUDispatcher)}
    assert len(kernels) >= 10
    # a helper called only from other kernels (directly or through another helper) compiles inside
    # them: it records no signature of its own
    called: set[str] = set()
    frontier = [f for f in kernels.values() if f.signatures]
    while frontier:
        names = {n for f in frontier for n in f.py_func.__code__.co_names if n in kernels} - called
        called |= names
        frontier = [kernels[n] for n in names]
    cold = sorted(name for name, f in kernels.items() if not f.signatures and name not in called)
    assert cold == [], f"kernels numba_cpu.warmup() leaves to compile on first use: {cold}"
