"""`import vqdb` must stay light: no numba, torch, transformers, fastapi or ray until a feature needs them."""

import os
import subprocess
import sys

HEAVY = ["numba", "torch", "transformers", "fastapi", "ray", "sentence_transformers", "faiss"]


def test_import_vqdb_loads_no_heavy_dependency():
    code = (
        "import sys, vqdb\n"
        "vqdb.TurboQuantizer, vqdb.QJLQuantizer, vqdb.PolarQuantizer\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"heavy modules imported by `import vqdb`: {out.stdout.strip()}"


def test_unknown_public_name_is_an_attribute_error():
    import vqdb

    try:
        vqdb.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")


def test_creating_an_index_compiles_nothing():
    """Kernels compile on first use, not at Index(): a new index loads no numba until it encodes or searches."""
    code = (
        "import sys, vqdb\n"
        "index = vqdb.Index(32, quantizer='turbo-4')\n"
        "print(','.join(m for m in ('numba', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"Index() imported {out.stdout.strip()}"


def test_vqdb_warmup_builds_the_kernels_and_says_where_they_are_cached():
    out = subprocess.run(
        [sys.executable, "-m", "vqdb", "warmup"], capture_output=True, text=True, check=True, timeout=900
    )
    assert "kernels ready" in out.stdout and "numba cache: " in out.stdout, out.stdout + out.stderr
    cache = out.stdout.split("numba cache: ")[1].strip()
    assert os.path.isdir(cache) and any(f.endswith(".nbi") for f in os.listdir(cache)), cache


def test_small_first_index_loads_no_numba_and_gets_numbas_results(tmp_path):
    """A new process's first small index (1,000 real vectors, one query, then ten) runs on the NumPy path: numba is never
    imported (nor pyarrow.compute, which only filters need), and the ids and scores are what the numba kernels
    return (tests/index/test_numpy_path.py)."""
    import numpy as np

    import vqdb
    from vqdb import datasets
    from vqdb.kernels import use_backend

    out = tmp_path / "res.npz"
    code = (
        "import sys, numpy as np, vqdb\n"
        "from vqdb import datasets, kernels\n"
        "s = datasets.wordnet_sample()\n"
        "index = vqdb.Index(384, quantizer='turbo-4')\n"
        "index.add(s.base[:1000])\n"
        "r = index.search(s.queries[:1], 10)\n"
        "b = index.search(s.queries[:10], 10)\n"
        f"np.savez({str(out)!r}, ids=r.ids, scores=r.scores, codes=index._snap.segments[0].codes, batch=b.ids)\n"
        "print(','.join(m for m in ('numba', 'llvmlite', 'pyarrow.compute') if m in sys.modules), "
        "sorted(kernels._LOADED))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    assert proc.stdout.split() == ["['reference']"], proc.stdout + proc.stderr
    s = datasets.wordnet_sample()
    with use_backend("numba"):
        index = vqdb.Index(384, quantizer="turbo-4")
        index.add(s.base[:1000])
        want = index.search(s.queries[:1], 10)
        batch = index.search(s.queries[:10], 10)
    got = np.load(out)
    np.testing.assert_array_equal(got["codes"], index._snap.segments[0].codes)
    np.testing.assert_array_equal(got["ids"], want.ids)
    np.testing.assert_array_equal(got["scores"], want.scores)
    np.testing.assert_array_equal(got["batch"], batch.ids)


def test_a_warm_process_builds_a_pca_index_without_scipy(tmp_path):
    """turbo-pca-N's Gaussian Lloyd-Max codebooks (8 bit widths) are solved with scipy once, then read from the
    on-disk codebook cache: a second process (warm cache) imports no scipy and builds the same codes, ids and
    scores on 1,000 real vectors."""
    import numpy as np

    home = tmp_path / "home"
    home.mkdir()
    code = (
        "import sys, numpy as np, vqdb\n"
        "from vqdb import datasets\n"
        "s = datasets.wordnet_sample()\n"
        "index = vqdb.Index(384, quantizer='turbo-pca-4')\n"
        "index.add(s.base[:1000])\n"
        "r = index.search(s.queries[:3], 10)\n"
        "np.savez(sys.argv[1], ids=r.ids, scores=r.scores, codes=index._snap.segments[0].codes)\n"
        "print('scipy' in sys.modules)\n"
    )
    env = dict(os.environ, HOME=str(home))
    runs = []
    for name in ("cold", "warm"):
        out = tmp_path / f"{name}.npz"
        proc = subprocess.run(
            [sys.executable, "-c", code, str(out)],
            capture_output=True,
            text=True,
            check=True,
            env=env,
            timeout=300,
        )
        runs.append((proc.stdout.split()[-1], np.load(out)))
    (cold_scipy, cold), (warm_scipy, warm) = runs
    assert cold_scipy == "True" and warm_scipy == "False", (cold_scipy, warm_scipy)
    assert len(list((home / ".cache" / "vqdb" / "codebooks").glob("v1-gauss-b*.npz"))) == 8
    for key in ("codes", "ids", "scores"):
        np.testing.assert_array_equal(warm[key], cold[key])
