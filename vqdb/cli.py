"""The ``vqdb`` command line. Each subcommand's work lives in its own module, imported only when used."""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> module exposing ``add_arguments(parser)`` and ``run(args) -> int``
SUBCOMMANDS = {
    "serve": ("vqdb.server.cli", "run the REST search service (uvicorn)"),
    "rag": ("vqdb.rag.cli", "add text files to / query a text collection"),
    "verify": (
        "vqdb.distributed.cli",
        "check every file of an index directory, plain or sharded (checksums, layout, log)",
    ),
    "salvage": (
        "vqdb.index.cli",
        "reopen an index whose write-ahead log is damaged, keeping its intact records",
    ),
    "bench": ("vqdb.quickbench", "quick benchmark of the quantizers on the bundled real sample"),
    "warmup": ("vqdb.kernels.warmup", "compile every CPU kernel into numba's on-disk cache (after install)"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vqdb", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    modules = {}
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:  # optional extra missing: the subcommand says so when used
            p.set_defaults(_missing=f"'vqdb {name}' needs an optional dependency: {exc}")
            continue
        module.add_arguments(p)
        modules[name] = module
    args = parser.parse_args(argv)
    missing = getattr(args, "_missing", None)
    if missing:
        print(missing, file=sys.stderr)
        return 2
    return int(modules[args.command].run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
