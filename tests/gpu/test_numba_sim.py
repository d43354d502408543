"""Every numba-cuda kernel under the CUDA simulator, at tiny sizes, against the NumPy reference.

The simulator has to be switched on before numba.cuda is first imported, so the checks run in a
subprocess (``sim_checks.py``) with ``NUMBA_ENABLE_CUDASIM=1``: other test modules keep the real numba.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("numba")

HERE = Path(__file__).resolve().parent


def test_numba_cuda_kernels_match_reference_under_simulator():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=str(HERE.parents[1]))
    env.pop("VQDB_BACKEND", None)
    proc = subprocess.run(
        [sys.executable, str(HERE / "sim_checks.py")], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("ok ") == 10, proc.stdout


def test_gpu_package_and_probes_import_nothing_heavy():
    code = (
        "import sys, vqdb, vqdb.kernels.cuda, vqdb.kernels as k; k.available_backends(); "
        "heavy = [m for m in ('numba', 'torch') if m in sys.modules]; "
        "assert not heavy or k.available_backends()['cuda-torch'] is None, heavy; print('light')"
    )
    env = dict(os.environ, PYTHONPATH=str(HERE.parents[1]))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "light" in proc.stdout, proc.stdout + proc.stderr
