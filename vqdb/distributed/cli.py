"""``vqdb verify PATH`` for a plain index directory or a sharded one (no Ray needed for either)."""

from __future__ import annotations

from ..index import cli as index_cli
from ._manifest import is_sharded_dir

add_arguments = index_cli.add_arguments


def run(args) -> int:
    if args.command == "verify" and is_sharded_dir(args.path):
        from ._verify import verify_sharded

        return index_cli.print_report(verify_sharded(args.path), as_json=args.json)
    return index_cli.run(args)
