"""The README's LangChain, LlamaIndex and Haystack examples run as printed (the Qdrant one needs a
server: tests/server/test_qdrant.py covers those calls)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def _examples() -> dict[str, str]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Frameworks and Qdrant clients") :]
    section = section[: section.index("\n## ", 1)]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    return {
        name: next(b for b in blocks if f"vqdb.integrations.{name}" in b)
        for name in ("langchain", "llama_index", "haystack")
    }


@pytest.mark.parametrize("name", ["langchain", "llama_index", "haystack"])
def test_readme_example_runs(name, capsys):
    pytest.importorskip(
        {"langchain": "langchain_core", "llama_index": "llama_index.core", "haystack": "haystack"}[name]
    )
    exec(compile(_examples()[name], f"README[{name}]", "exec"), {})
    out = capsys.readouterr().out
    assert {"langchain": "a cat on a mat", "llama_index": "a cat on a mat", "haystack": "content: 'a cat'"}[
        name
    ] in out
    assert "a dog" not in out  # Haystack's example filters it out
