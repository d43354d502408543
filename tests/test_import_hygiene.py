"""`import vqdb` must stay light: no numba, torch, transformers, fastapi or ray until a feature needs them."""

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
