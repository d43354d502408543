"""vqdb's packages import one way only, read from the source with ``ast`` (lazy imports inside functions and
``importlib.import_module("vqdb...")`` calls included)::

    core  <-  kernels  <-  quantizers  <-  index, kvcache  <-  app (server, rag, distributed, integrations, ...)

A module may import its own layer and any lower one, except that ``index`` and ``kvcache`` never import each
other; the app layer includes the public face (``vqdb/__init__.py``, lazy re-exports) and the CLI. The core
layer is ``vqdb/_core`` plus the leaf modules that stay where users import them from (``vqdb.errors``,
``vqdb.envs``, ``vqdb._validation``, ``vqdb.testing``). ``from vqdb import __version__`` counts as core: the
version string is set first thing in ``vqdb/__init__.py``, before any submodule loads.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

import vqdb

CORE, KERNELS, QUANTIZERS, STORES, APP = range(5)
LAYER_NAMES = {
    CORE: "core",
    KERNELS: "kernels",
    QUANTIZERS: "quantizers",
    STORES: "index/kvcache",
    APP: "app",
}

# first name under vqdb -> layer; a new top-level module or package must be added here (the test says so)
LAYERS = {
    "_core": CORE,
    "errors": CORE,
    "envs": CORE,
    "_validation": CORE,
    "testing": CORE,
    "__version__": CORE,
    "kernels": KERNELS,
    "quantizers": QUANTIZERS,
    "presets": QUANTIZERS,
    "index": STORES,
    "kvcache": STORES,
    "server": APP,
    "rag": APP,
    "distributed": APP,
    "integrations": APP,
    "client": APP,
    "_client_ops": APP,  # the sans-IO calls of vqdb.Client / AsyncClient
    "datasets": APP,
    "quickbench": APP,
    "cli": APP,
    "__main__": APP,
    "": APP,  # the package root: vqdb/__init__.py, the public face (lazy re-exports only)
}


def _module_name(path: Path, root: Path) -> tuple[str, bool]:
    """(dotted module name, is_package) of ``path`` inside the package directory ``root`` (named vqdb)."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    is_pkg = parts[-1] == "__init__"
    if is_pkg:
        parts = parts[:-1]
    return ".".join(parts), is_pkg


def _imported(tree: ast.AST, module: str, is_pkg: bool, *, names: bool = False) -> list[tuple[int, str]]:
    """(line, absolute dotted target) of every import in ``tree``, lazy ones included; with ``names``, each
    name of a ``from X import name`` is reported as ``X.name`` too (it may be a submodule)."""
    package = module if is_pkg else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # "from vqdb import errors" imports vqdb.errors: judge each name against the package it comes from
            out += [(node.lineno, f"{mod}.{a.name}" if mod == "vqdb" else mod) for a in node.names]
            if names and mod != "vqdb":
                out += [(node.lineno, f"{mod}.{a.name}") for a in node.names]
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            out.append((node.lineno, node.args[0].value))
    return out


def _top(dotted: str) -> str:
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else ""


def violations(root: Path) -> list[str]:
    """Every import under the package directory ``root`` that goes against the layer direction."""
    bad, unknown = [], set()
    for path in sorted(root.rglob("*.py")):
        module, is_pkg = _module_name(path, root)
        src = _top(module)
        if src not in LAYERS:
            if src not in unknown:
                unknown.add(src)
                bad.append(
                    f"{path}: module vqdb.{src} has no layer; add it to LAYERS in tests/test_layers.py"
                )
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for line, target in sorted(set(_imported(tree, module, is_pkg))):
            if target != "vqdb" and not target.startswith("vqdb."):
                continue
            dst = _top(target)
            is_module = (root / dst).is_dir() or (root / f"{dst}.py").is_file()
            if dst not in LAYERS and not is_module:
                dst = ""  # a public name of the face ("from vqdb import Index")
            if dst == src:
                continue
            if dst not in LAYERS:
                bad.append(f"{path}:{line} imports {target}, which has no layer")
                continue
            a, b = LAYERS[src], LAYERS[dst]
            if b < a or (a == b and a != STORES):
                continue
            bad.append(
                f"{path}:{line} {module} ({LAYER_NAMES[a]}) imports {target} ({LAYER_NAMES[b]}): "
                "against the layer direction"
            )
    return bad


def test_vqdb_imports_one_way():
    root = Path(vqdb.__file__).parent
    assert violations(root) == []


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "vqdb"
    for rel, text in {"__init__.py": "", **files}.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        (p.parent / "__init__.py").touch()
        p.write_text(textwrap.dedent(text))
    return root


@pytest.mark.parametrize(
    "rel,text,culprit",
    [
        # a lazy relative import inside a function, two levels up
        ("kernels/bad.py", "def f():\n    from ..quantizers import turbo\n", "vqdb.quantizers"),
        # absolute import from a subpackage of the kernels, three levels up
        ("kernels/cuda/bad.py", "import vqdb.index.index\n", "vqdb.index.index"),
        # sideways between the two stores
        ("index/bad.py", "from ..kvcache import layer\n", "vqdb.kvcache"),
        ("kvcache/bad.py", "from vqdb import index\n", "vqdb.index"),
        # the core imports nothing above it, not even through the package root or importlib
        ("_core/bad.py", "from .. import kernels\n", "vqdb.kernels"),
        (
            "errors.py",
            "import importlib\nimportlib.import_module('vqdb.quantizers.turbo')\n",
            "vqdb.quantizers.turbo",
        ),
        # a lower layer may not use the public face for names that live higher up
        ("quantizers/bad.py", "def f():\n    import vqdb\n    return vqdb.Index\n", "vqdb"),
        ("index/bad.py", "from vqdb import Index\n", "vqdb.Index"),
    ],
)
def test_a_bad_import_is_caught(tmp_path, rel, text, culprit):
    root = _tree(tmp_path, {rel: text})
    found = violations(root)
    assert len(found) == 1 and f"imports {culprit} " in found[0], found


def test_allowed_imports_pass(tmp_path):
    root = _tree(
        tmp_path,
        {
            "_core/packing.py": "import numpy\n",
            "errors.py": "",
            "kernels/cuda/scan.py": "from ... import errors\nfrom ..._core import packing\nfrom .. import reference\n",
            "kernels/reference.py": "from .._core.packing import pack_bits\n",
            "quantizers/turbo.py": "from ..kernels import get_ops\nfrom .._core import packing\n",
            "index/index.py": "def f():\n    from ..kernels import device_scanner\nfrom .. import __version__\n",
            "kvcache/layer.py": "from ..quantizers import turbo\n",
            "server/app.py": "from ..rag import collection\nfrom ..index import index\nimport vqdb\n",
            "rag/collection.py": "from ..server import app\n",
        },
    )
    assert violations(root) == []


def test_a_module_without_a_layer_is_reported(tmp_path):
    root = _tree(tmp_path, {"graphs/hnsw.py": "from ..index import index\n"})
    found = violations(root)
    assert len(found) == 1 and "vqdb.graphs has no layer" in found[0], found


def device_imports(root: Path) -> list[str]:
    """Imports of the CUDA backends (``vqdb.kernels.cuda``) from the index, one per line: it reaches devices
    only through the dispatch (``vqdb.kernels.require_device`` / ``device_scanner``)."""
    bad = {}
    for path in sorted((root / "index").rglob("*.py")):
        module, is_pkg = _module_name(path, root)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for line, target in sorted(set(_imported(tree, module, is_pkg, names=True))):
            if target == "vqdb.kernels.cuda" or target.startswith("vqdb.kernels.cuda."):
                bad.setdefault(
                    (str(path), line), f"{path}:{line} {module} imports {target}: use vqdb.kernels"
                )
    return list(bad.values())


def test_the_index_reaches_devices_only_through_the_dispatch(tmp_path):
    assert device_imports(Path(vqdb.__file__).parent) == []
    files = {
        "index/dev.py": "from vqdb.kernels import cuda, device_scanner\n",
        "index/scan.py": "def f():\n    from ..kernels.cuda.index_scan import DeviceScan\n",
    }
    found = device_imports(_tree(tmp_path, files))
    assert len(found) == 2, found
    assert "dev.py:1 vqdb.index.dev imports vqdb.kernels.cuda:" in found[0], found
    assert "scan.py:2 vqdb.index.scan imports vqdb.kernels.cuda.index_scan" in found[1], found
