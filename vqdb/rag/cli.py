"""``vqdb rag``: add text files to a collection directory, and ask it questions.

    vqdb rag add notes/*.md report.txt --collection ./my-docs
    vqdb rag query "how do I rotate the keys?" --collection ./my-docs -k 5 --mode hybrid

Files must be UTF-8 text (a byte-order mark is allowed); a directory adds every ``.txt``, ``.md``,
``.rst`` file under it. Each file becomes one document, with metadata ``{"source": <path>}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

DEFAULT_COLLECTION = "vqdb-rag"
TEXT_SUFFIXES = (".txt", ".md", ".rst", ".text", ".markdown")
FILES_PER_BATCH = 64  # documents embedded and stored per write (progress survives interruptions)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="rag_command", required=True)
    a = sub.add_parser("add", help="add UTF-8 text files (or directories of them) to a collection")
    a.add_argument("files", nargs="+", help="text files or directories")
    a.add_argument(
        "--collection", "-c", default=DEFAULT_COLLECTION, help="collection directory (created if missing)"
    )
    a.add_argument(
        "--model",
        default=None,
        help="sentence-transformers model directory (new collections only; "
        "default: the bundled all-MiniLM-L6-v2)",
    )
    a.add_argument("--quantizer", default="turbo-4", help="vector compression preset of a new collection")
    a.add_argument(
        "--chunk-size", type=int, default=None, help="characters per passage (new collections only)"
    )
    a.add_argument(
        "--chunk-overlap", type=int, default=None, help="characters shared by neighbouring passages"
    )
    a.add_argument("--no-progress", action="store_true", help="no progress bars")
    q = sub.add_parser("query", help="ask a collection a question")
    q.add_argument("text", help="the question")
    q.add_argument("--collection", "-c", default=DEFAULT_COLLECTION, help="collection directory")
    q.add_argument("-k", type=int, default=5, help="passages to return")
    q.add_argument("--mode", choices=["hybrid", "dense", "bm25"], default="hybrid")
    q.add_argument("--filter", default=None, help='metadata filter as JSON, e.g. \'{"source": "a.txt"}\'')
    q.add_argument("--json", action="store_true", help="print the hits as JSON lines")


def _collect_files(paths: list[str]) -> list[str]:
    from ..errors import NotFoundError

    files = []
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, names in os.walk(p):
                dirs.sort()
                files += [os.path.join(root, n) for n in sorted(names) if n.lower().endswith(TEXT_SUFFIXES)]
        elif os.path.isfile(p):
            files.append(p)
        else:
            raise NotFoundError(f"no such file or directory: {p!r}")
    return files


def read_text_file(path: str) -> str:
    """The text of a UTF-8 file; :class:`InvalidInputError` naming the first bad byte otherwise."""
    from ..errors import InvalidInputError

    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "convert it first, e.g. `iconv -f latin1 -t utf-8`"
        ) from None


def _open_or_create(args):
    from .collection import TextCollection

    kwargs = {"model": args.model, "quantizer": args.quantizer}
    if args.chunk_size is not None:
        kwargs["chunk_size"] = args.chunk_size
    if args.chunk_overlap is not None:
        kwargs["chunk_overlap"] = args.chunk_overlap
    return TextCollection(args.collection, **kwargs)


def _add(args) -> int:
    from tqdm.auto import tqdm

    files = _collect_files(args.files)
    texts, sources = [], []
    for path in files:  # read (and check) everything before writing anything
        text = read_text_file(path)
        if not text.strip():
            print(f"skipping {path}: empty", file=sys.stderr)
            continue
        texts.append(text)
        sources.append(path)
    if not texts:
        print("nothing to add", file=sys.stderr)
        return 1
    col = _open_or_create(args)
    n_passages = 0
    with tqdm(total=len(texts), desc="files", unit="file", disable=args.no_progress) as bar:
        for s in range(0, len(texts), FILES_PER_BATCH):
            batch = texts[s : s + FILES_PER_BATCH]
            ids = col.add(
                batch,
                metadata=[{"source": p} for p in sources[s : s + FILES_PER_BATCH]],
                progress=not args.no_progress,
            )
            n_passages += len(ids)
            bar.update(len(batch))
    col.save()
    print(
        f"added {len(texts)} file(s) as {n_passages} passage(s) to {args.collection} ({len(col)} passages in all)"
    )
    return 0


def _query(args) -> int:
    from ..errors import InvalidInputError
    from .collection import TextCollection

    flt = None
    if args.filter:
        try:
            flt = json.loads(args.filter)
        except ValueError as exc:
            raise InvalidInputError(f"--filter is not valid JSON: {exc}") from None
    col = TextCollection.open(args.collection)
    hits = col.query(args.text, k=args.k, mode=args.mode, filter=flt)
    for rank, hit in enumerate(hits, start=1):
        if args.json:
            print(json.dumps(hit.to_dict(), ensure_ascii=False))
        else:
            source = hit.metadata.get("source", f"doc {hit.doc_id}")
            print(f"{rank:>2}. [{hit.score:.4f}] {source} #{hit.chunk}\n    {hit.text}")
    if not hits:
        print("no passage found", file=sys.stderr)
    return 0


def run(args) -> int:
    """Entry point of ``vqdb rag``; returns the exit status (2 on bad input, with a message)."""
    from ..errors import VqdbError

    try:
        return _add(args) if args.rag_command == "add" else _query(args)
    except VqdbError as exc:
        print(f"vqdb rag: {exc}", file=sys.stderr)
        return 2
