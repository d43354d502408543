"""``vqdb verify PATH`` and ``vqdb salvage PATH``: check an index directory; keep what a damaged
write-ahead log still holds."""

from __future__ import annotations

import json
import sys


def add_arguments(parser) -> None:
    parser.add_argument("path", help="index directory")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args) -> int:
    return _verify(args) if args.command == "verify" else _salvage(args)


def _verify(args) -> int:
    from ._verify import verify

    return print_report(verify(args.path), as_json=args.json)


def print_report(report: dict, *, as_json: bool) -> int:
    """Print a verify report (text or JSON); the exit status: 0 when intact, 1 when damaged."""
    if as_json:
        print(json.dumps(report, indent=1))
    else:
        state = "OK" if report["ok"] else "DAMAGED"
        print(
            f"{report['path']}: {state} (format {report['format_version']}, {len(report['checked'])} files intact)"
        )
        for p in report["problems"]:
            print(f"  problem: {p['file']}: {p['error']}")
        for n in report["notes"]:
            print(f"  note: {n}")
    return 0 if report["ok"] else 1


def _salvage(args) -> int:
    from ..errors import VqdbError
    from .index import Index

    try:
        with Index.open(args.path, salvage=True) as index:
            salvaged = index.stats().get("salvaged")
            n = len(index)
    except VqdbError as exc:
        print(f"{args.path}: cannot salvage: {exc}", file=sys.stderr)
        return 1
    result = {"path": args.path, "vectors": n, "salvaged": salvaged}
    if args.json:
        print(json.dumps(result, indent=1))
    elif salvaged:
        print(
            f"{args.path}: kept {salvaged['kept_records']} intact log records ({n} vectors now); "
            f"{salvaged['lost_bytes']} damaged bytes moved aside in {salvaged['damaged_log']}"
        )
    else:
        print(f"{args.path}: nothing to salvage ({n} vectors)")
    return 0
