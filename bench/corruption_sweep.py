"""Byte-flip corruption sweep of a stored index: every flip's outcome classified.

A real index (WordNet MiniLM vectors, metadata, a segment, a deletes file, a state file, a cleanly closed
write-ahead log with unflushed adds and deletes) is written once. Each trial copies it, XORs one byte of
one file with a random non-zero value, then opens it for writing (as ``vqdb serve`` does) and reads
everything back (every id, vector and metadata row, and 10 searches), then again read-only. Outcomes:

- ``error``: a vqdb error was raised (``named`` counts those whose message or ``.file`` names the file);
- ``identical``: everything read back equals the undamaged index;
- ``silent``: something read back differs and no error was raised (must be 0);
- ``raw``: an exception that is not a vqdb error (must be 0);
- ``crash``: the process died (a signal, e.g. a segfault) (must be 0).

Family ``crafted`` (``--crafted``; :mod:`bench.crafted_states`): no flipped byte but files rewritten
with VALID checksums, state arrays of the wrong shape / dtype / range and manifest counts that
disagree, over one small index per quantizer layout; the same outcomes apply.

Trials run in worker subprocesses, one trial at a time, each reporting before the next starts, so a
crash is pinned to its trial and the sweep goes on in a fresh worker. ``wal-crash`` flips the log of a
writer that died without closing (no clean-close size in the manifest).

Run: ``python -m bench.corruption_sweep --flips 40 --crafted`` (writes bench/results/corruption_sweep.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

KINDS = ("segment", "state", "deletes", "manifest", "wal", "wal-crash")
CONTROLS = 2  # trials per source that flip nothing (XOR 0): must read back identical data
OUTCOMES = ("error", "identical", "silent", "raw", "crash")


def build(root: str, n: int = 1200) -> dict:
    """Write the undamaged index under ``root/clean`` (and ``root/crashed``); return the file of each kind."""
    import vqdb
    from vqdb import datasets
    from vqdb.index import _storage as st

    ds = datasets.wordnet_sample()
    x = ds.base[: n + 150]
    meta = [{"i": i, "word": f"w{i % 13}", "even": i % 2 == 0} for i in range(len(x))]
    path = os.path.join(root, "clean")
    index = vqdb.Index(ds.dim, metric="cos", quantizer="turbo-4", path=path, store_vectors=True)
    index.add(x[:n], metadata=meta[:n])
    index.save()
    index.delete(list(range(0, 100, 3)))
    index.save()  # a deletes file
    index.add(x[n:], metadata=meta[n:])  # left in the log
    index.delete([n + 1, n + 2, 5])
    index.close()
    np.save(os.path.join(root, "queries.npy"), ds.queries[:10])
    manifest = json.load(open(os.path.join(path, st.MANIFEST)))
    crashed = os.path.join(root, "crashed")
    shutil.copytree(path, crashed)
    m = dict(manifest)
    m.pop("wal_closed", None)  # as a writer that died leaves it
    st.write_manifest(crashed, m)
    return {
        "segment": ("clean", manifest["segments"][0]["file"]),
        "state": ("clean", manifest["state_file"]),
        "deletes": ("clean", manifest["deletes_file"]),
        "manifest": ("clean", st.MANIFEST),
        "wal": ("clean", manifest["wal_file"]),
        "wal-crash": ("crashed", manifest["wal_file"]),
    }


def digest(index, queries) -> str:
    """SHA-256 over everything a user can read back: ids, vectors, metadata, search ids and scores."""
    h = hashlib.sha256()
    ids = np.sort(np.asarray(index.ids()))
    h.update(ids.tobytes())
    rec = index.get(ids)
    if rec.vectors is not None:
        h.update(np.ascontiguousarray(rec.vectors).tobytes())
    h.update(json.dumps(rec.metadata, sort_keys=True).encode())
    res = index.search(queries, 10)
    h.update(np.asarray(res.ids).tobytes())
    h.update(np.asarray(res.scores).tobytes())
    return h.hexdigest()


def _worker() -> None:
    """Run the trials read from stdin (one JSON per line), print one JSON result per trial."""
    import vqdb
    from vqdb.errors import VqdbError

    for line in sys.stdin:
        t = json.loads(line)
        queries = np.load(os.path.join(t["root"], "queries.npy"))
        work = os.path.join(t["root"], "work")
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(os.path.join(t["root"], t["source"]), work)
        out = {"i": t["i"]}
        if "craft" in t:
            from bench import crafted_states

            crafted_states.apply(work, t["craft"])
        else:
            with open(os.path.join(work, t["file"]), "r+b") as f:
                f.seek(t["offset"])
                b = f.read(1)
                f.seek(t["offset"])
                f.write(bytes([b[0] ^ t["xor"]]))
        try:
            with vqdb.open(work) as index:
                first = digest(index, queries)
            with vqdb.open(work, read_only=True) as index:
                second = digest(index, queries)
            same = first == t["truth"] and second == t["truth"]
            out["outcome"] = "identical" if same else "silent"
        except VqdbError as exc:
            out["outcome"] = "error"
            out["error"] = type(exc).__name__
            out["named"] = getattr(exc, "file", None) == t["file"] or t["file"] in str(exc)
            out["message"] = str(exc)[:300]
        except Exception as exc:  # not a vqdb error: unclear to a user
            out["outcome"] = "raw"
            out["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        print(json.dumps(out), flush=True)


def _truth(root: str, source: str) -> str:
    import vqdb

    queries = np.load(os.path.join(root, "queries.npy"))
    work = os.path.join(root, "truth-" + source)
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(os.path.join(root, source), work)
    with vqdb.open(work) as index:
        return digest(index, queries)


def _crafted_trials(root: str, sources: list[str] | None) -> list[dict]:
    """One trial per craft of :mod:`bench.crafted_states` (of the named sources; None: all)."""
    from bench import crafted_states
    from vqdb import datasets
    from vqdb.index import _storage as st

    built = crafted_states.build_sources(root, datasets.wordnet_sample().base, sources)
    truth = {d: _truth(root, d) for d in built.values()}
    trials = []
    for craft in crafted_states.crafts(root, built):
        m = json.load(open(os.path.join(root, craft["source"], st.MANIFEST)))
        trials.append(
            {
                "kind": "crafted",
                "root": root,
                "source": craft["source"],
                "file": m["state_file"] if craft["target"] == "state" else st.MANIFEST,
                "craft": craft,
                "truth": truth[craft["source"]],
            }
        )
    return trials


def run_sweep(
    flips: int,
    *,
    seed: int = 0,
    root: str | None = None,
    kinds=KINDS,
    crafted: bool = False,
    crafted_sources: list[str] | None = None,
) -> dict:
    """Run ``flips`` byte flips per kind (and, with ``crafted``, every craft of ``crafted_sources``);
    return ``{"trials": [...], "summary": {kind: {outcome: n}}}``."""
    own = root is None
    root = root or tempfile.mkdtemp(prefix="vqdb-sweep-")
    try:
        files = build(root)
        truth = {src: _truth(root, src) for src in ("clean", "crashed")}
        rng = np.random.default_rng(seed)
        trials = []
        for kind in kinds:
            source, name = files[kind]
            size = os.path.getsize(os.path.join(root, source, name))
            for offset in np.sort(rng.choice(size, size=min(flips, size), replace=False)):
                trials.append(
                    {
                        "i": len(trials),
                        "kind": kind,
                        "root": root,
                        "source": source,
                        "file": name,
                        "size": size,
                        "offset": int(offset),
                        "xor": int(rng.integers(1, 256)),
                        "truth": truth[source],
                    }
                )
        for source in ("clean", "crashed"):  # controls: the read-back path works and is deterministic
            for _ in range(CONTROLS):
                name = files["wal" if source == "clean" else "wal-crash"][1]
                trials.append(
                    {
                        "i": len(trials),
                        "kind": f"control-{source}",
                        "root": root,
                        "source": source,
                        "file": name,
                        "size": 0,
                        "offset": 0,
                        "xor": 0,
                        "truth": truth[source],
                    }
                )
        if crafted:
            for t in _crafted_trials(root, crafted_sources):
                trials.append({"i": len(trials), **t})
        results = {}
        start = 0
        while start < len(trials):
            proc = subprocess.Popen(
                [sys.executable, "-m", "bench.corruption_sweep", "--worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            )
            payload = "".join(json.dumps(t) + "\n" for t in trials[start:])
            stdout, _ = proc.communicate(payload)
            for line in stdout.splitlines():
                r = json.loads(line)
                results[r["i"]] = r
            done = [i for i in range(start, len(trials)) if i in results]
            nxt = (max(done) + 1) if done else start
            if nxt < len(trials) and proc.returncode != 0:  # the worker died in trial ``nxt``
                results[nxt] = {
                    "i": nxt,
                    "outcome": "crash",
                    "error": f"worker exit status {proc.returncode}",
                }
                nxt += 1
            start = nxt
        families = (*kinds, "control-clean", "control-crashed", *(("crafted",) if crafted else ()))
        summary = {k: dict.fromkeys((*OUTCOMES, "named"), 0) for k in families}
        for t in trials:
            r = results[t["i"]]
            t.update({k: v for k, v in r.items() if k != "i"})
            summary[t["kind"]][r["outcome"]] += 1
            summary[t["kind"]]["named"] += int(bool(r.get("named")))
        return {"trials": trials, "summary": summary}
    finally:
        if own:
            shutil.rmtree(root, ignore_errors=True)


def _write_report(result: dict, args, seconds: float) -> str:
    from bench.common import RESULTS_DIR

    load = os.getloadavg()
    lines = [
        "# Corruption sweep: one flipped byte per trial, every outcome classified",
        "",
        f"Command: `python -m bench.corruption_sweep --flips {args.flips} --seed {args.seed}"
        f"{' --crafted' if args.crafted else ''}`  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {seconds:.0f} s; "
        f"load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (2 cores, shared)  ",
        "Index: 1,350 WordNet MiniLM-384 vectors, cos, turbo-4, float16 vectors stored, metadata "
        "(int, str, bool); one segment, one deletes file, a state file, a write-ahead log holding 150 "
        "adds and 3 deletes, closed cleanly (`wal-crash`: the same log without the clean-close size, as a "
        "writer that died leaves it). Each trial XORs one byte (random offset, random non-zero value), "
        "opens for writing, reads every id / vector / metadata row and 10 searches, then again read-only.",
        "",
        "| file | flips | clear error | (names the file) | identical data | silent change | raw exception | crash |",
        "|---|---|---|---|---|---|---|---|",
    ]
    total = dict.fromkeys((*OUTCOMES, "named", "flips"), 0)
    for kind, s in result["summary"].items():
        if kind.startswith("control"):
            continue
        n = sum(s[o] for o in OUTCOMES)
        lines.append(
            f"| {kind} | {n} | {s['error']} | {s['named']} | {s['identical']} | {s['silent']} | {s['raw']} | {s['crash']} |"
        )
        for k in OUTCOMES + ("named",):
            total[k] += s[k]
        total["flips"] += n
    lines.append(
        f"| **all** | {total['flips']} | {total['error']} | {total['named']} | {total['identical']} | "
        f"{total['silent']} | {total['raw']} | {total['crash']} |"
    )
    crafted = [t for t in result["trials"] if t["kind"] == "crafted"]
    if crafted:
        lines += [
            "",
            "`crafted`: no flipped byte; the state file or manifest rewritten with VALID checksums "
            "(bench/crafted_states.py: each state array dropped, cut short, lengthened, emptied, reshaped, "
            "cast to bool / float16 / int / float, given NaN, ±inf, 3e38, -1, max+1 or 2**40; an unknown "
            "array added; manifest code_size / dim / quantizer dim, bits, kind, seed / segment rows / "
            "next_id / IVF nlist changed), over 400 WordNet vectors per quantizer layout:",
            "",
            "| source | crafts | clear error | identical data | silent change | raw exception | crash |",
            "|---|---|---|---|---|---|---|",
        ]
        for src in sorted({t["source"] for t in crafted}):
            mine = [t for t in crafted if t["source"] == src]
            n = {o: sum(t["outcome"] == o for t in mine) for o in OUTCOMES}
            lines.append(
                f"| {src[4:]} | {len(mine)} | {n['error']} | {n['identical']} | {n['silent']} | {n['raw']} | {n['crash']} |"
            )
        same = sorted({t["craft"]["change"] for t in crafted if t["outcome"] == "identical"})
        lines += ["", f"Crafts that read back identical data: {', '.join(same) or 'none'}"]
    controls = {k: s for k, s in result["summary"].items() if k.startswith("control")}
    lines += [
        "",
        "Controls (same trial, byte XOR 0, i.e. nothing changed; they must read back identical data, which "
        "shows the read-back path runs and the comparison is exact): "
        + ", ".join(
            f"{k}: {s['identical']} of {sum(s[o] for o in OUTCOMES)} identical" for k, s in controls.items()
        ),
    ]
    lines += ["", "Errors raised (class: count):", ""]
    classes: dict = {}
    for t in result["trials"]:
        if t["outcome"] == "error":
            classes[t["error"]] = classes.get(t["error"], 0) + 1
    lines += [f"- {k}: {v}" for k, v in sorted(classes.items())]
    odd = [t for t in result["trials"] if t["outcome"] in ("silent", "raw", "crash")]
    ident = [
        t
        for t in result["trials"]
        if t["outcome"] == "identical" and not t["kind"].startswith("control") and t["kind"] != "crafted"
    ]
    lines += [
        "",
        f"Identical-data flips ({len(ident)}): " + ", ".join(f"{t['kind']}@{t['offset']}" for t in ident),
    ]
    if odd:
        lines += ["", "Silent changes, raw exceptions and crashes:", ""]
        for t in odd:
            where = t.get("craft") or "byte {}".format(t["offset"])
            lines.append(f"- {t['kind']} {where}: {t['outcome']} {t.get('error', '')}")
    text = "\n".join(lines) + "\n"
    os.makedirs(RESULTS_DIR, exist_ok=True)
    with open(os.path.join(RESULTS_DIR, "corruption_sweep.md"), "w") as f:
        f.write(text)
    with open(os.path.join(RESULTS_DIR, "corruption_sweep.json"), "w") as f:
        json.dump({"summary": result["summary"], "load": load, "seconds": seconds}, f, indent=1)
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flips", type=int, default=40, help="flips per file kind")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--crafted", action="store_true", help="also the crafted valid-checksum family")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker()
        return 0
    t0 = time.perf_counter()
    result = run_sweep(args.flips, seed=args.seed, crafted=args.crafted)
    print(_write_report(result, args, time.perf_counter() - t0))
    bad = sum(s["silent"] + s["raw"] + s["crash"] for s in result["summary"].values())
    controls_ok = all(
        s["identical"] == CONTROLS for k, s in result["summary"].items() if k.startswith("control")
    )
    return 1 if bad or not controls_ok else 0


if __name__ == "__main__":
    sys.exit(main())
