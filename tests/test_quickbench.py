"""Smoke test of ``vqdb bench`` (the quick quantizer benchmark): it runs and prints its table."""

from __future__ import annotations

import json

import pytest

from vqdb.cli import main


def test_vqdb_bench_smoke(tmp_path, capsys):
    out = tmp_path / "bench.json"
    peers = ["sq4"]
    try:
        import faiss  # noqa: F401
    except ImportError:
        peers = []
    rc = main(
        [
            "bench",
            "--presets",
            "turbo-2",
            "qjl",
            "--peers",
            *peers,
            "--n-base",
            "800",
            "--n-queries",
            "40",
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "recall@10" in text and "turbo-2" in text and "qjl" in text
    rows = {r["method"]: r for r in json.loads(out.read_text())["rows"]}
    # 384 dims * 2 bits / 8 = 96 B of codes + three float32 side scalars (the scale, the centred-query term β and the last side slot)
    assert rows["turbo-2"]["bytes"] == 96 + 3 * 4
    assert 0.5 < rows["turbo-2"]["recall@10"] <= 1.0  # real MiniLM vectors, exact ground truth
    if peers:
        assert "faiss-SQ4" in rows


def test_vqdb_bench_unknown_preset_fails_cleanly(capsys):
    rc = main(["bench", "--presets", "no-such-preset", "--peers", "--n-base", "100", "--n-queries", "5"])
    assert rc == 1
    assert "no-such-preset" in capsys.readouterr().err


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])
