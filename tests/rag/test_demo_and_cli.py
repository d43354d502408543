"""The demo collection (precomputed vectors, no model run at build) and the ``vqdb rag`` command line."""

import json

import pytest

from vqdb.cli import main
from vqdb.rag import open as open_collection
from vqdb.rag.demo import build_demo_collection


def test_demo_collection_answers_questions_in_words(tmp_path, embedder):
    col = build_demo_collection(tmp_path / "demo")
    assert len(col) == 5000 and col.dim == 384
    col.close()
    col = open_collection(tmp_path / "demo")
    for mode in ["hybrid", "dense"]:
        hits = col.query("a large wild cat", k=3, mode=mode)
        assert any("Felis" in h.text or "wildcat" in h.text for h in hits), [h.text for h in hits]
    hits = col.query("thermometer", k=5, mode="bm25", filter={"pos": "noun"})
    assert hits and all("thermometer" in h.text and h.metadata["pos"] == "noun" for h in hits)
    col.close()


@pytest.fixture
def files(tmp_path, wordnet):
    d = tmp_path / "docs"
    (d / "sub").mkdir(parents=True)
    (d / "a.txt").write_text("\n".join(wordnet.texts[:30]), encoding="utf-8")
    (d / "sub" / "b.md").write_text("\n".join(wordnet.texts[30:60]), encoding="utf-8")
    (d / "sub" / "skip.bin").write_bytes(b"\x00\x01")  # not a text suffix: not picked from a directory
    return d


def test_cli_add_then_query(tmp_path, files, capsys, embedder, wordnet):
    col = str(tmp_path / "col")
    assert main(["rag", "add", str(files), "--collection", col, "--chunk-size", "500", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "added 2 file(s)" in out
    word = wordnet.texts[40].split(" (")[0].split(",")[0]
    assert main(["rag", "query", word, "--collection", col, "-k", "3", "--json"]) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert hits and hits[0]["metadata"]["source"].endswith("b.md")
    assert any(h["text"] in "\n".join(wordnet.texts[30:60]) and word in h["text"] for h in hits)
    assert main(["rag", "query", word, "--collection", col, "--filter", '{"source": "nowhere"}']) == 0
    assert "no passage found" in capsys.readouterr().err


def test_cli_bad_input(tmp_path, files, capsys):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\u00e9 cr\u00e8me".encode("latin-1"))
    col = str(tmp_path / "col2")
    assert main(["rag", "add", str(bad), "--collection", col]) == 2
    err = capsys.readouterr().err
    assert "not UTF-8" in err and "offset 3" in err
    assert main(["rag", "add", str(tmp_path / "missing.txt"), "--collection", col]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["rag", "query", "hello", "--collection", str(tmp_path / "nope")]) == 2
    assert "no text collection" in capsys.readouterr().err
    assert main(["rag", "query", "hello", "--collection", col, "--filter", "{bad json"]) == 2
