"""Rebuild token_counts.json: true token counts of two real tokenizers, for tests/unit/test_tokens.py.

Not run by the tests (the tokenizers are not project dependencies). To rebuild, in a throwaway
virtual environment of the same Python (3.11) as the project:

    python -m venv /tmp/calvenv && /tmp/calvenv/bin/pip install "mistral-common[sentencepiece]==1.13.1"
    /tmp/calvenv/bin/python tests/unit/data/make_token_counts.py path/to/support-triage.csv

The tokenizer files ship inside the mistral-common wheel: `tokenizer.model.v1` (Mistral 7B's
32,000-piece SentencePiece BPE) and `tekken_240911.json` (Mistral NeMo's 131,072-token
tiktoken-style BPE). "other_languages" holds handwritten samples and is carried over as it is.
"""

from __future__ import annotations

import csv
import importlib
import inspect
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).parent
MODULES = [
    "argparse",
    "asyncio",
    "collections",
    "csv",
    "datetime",
    "decimal",
    "email",
    "fractions",
    "functools",
    "heapq",
    "http.client",
    "inspect",
    "io",
    "itertools",
    "json",
    "logging",
    "os",
    "pathlib",
    "pickle",
    "random",
    "re",
    "shutil",
    "socket",
    "sqlite3",
    "statistics",
    "string",
    "subprocess",
    "tarfile",
    "tempfile",
    "textwrap",
    "threading",
    "typing",
    "unittest",
    "urllib.parse",
    "uuid",
    "zipfile",
    "zoneinfo",
    "difflib",
    "calendar",
    "codecs",
]


def prose() -> list[str]:
    """Paragraphs of docstrings without code examples or markup: English technical prose."""
    out: list[str] = []
    seen: set[str] = set()
    for name in MODULES:
        module = importlib.import_module(name)
        for attr, obj in sorted(vars(module).items()):
            if attr.startswith("_") or inspect.ismodule(obj):  # submodules vary with import order
                continue
            doc = inspect.getdoc(obj)
            if not doc or len(doc) <= 300 or getattr(obj, "__module__", name) != name:
                continue
            paragraphs = [
                p
                for p in doc[:2000].split("\n\n")
                if ">>>" not in p
                and not re.search(r"^\s{2,}", p, re.M)
                and len(p) > 150
                and "``" not in p
                and not re.search(r"[\[\]{}=<>]", p)
            ]
            text = "\n\n".join(paragraphs)
            if len(text) > 250 and text not in seen:
                seen.add(text)
                out.append(text)
    return out


def main() -> None:
    import sentencepiece  # type: ignore[import-not-found]  # noqa: PLC0415 - throwaway env only
    from mistral_common.tokens.tokenizers.tekken import Tekkenizer  # type: ignore[import-not-found]  # noqa: PLC0415

    data = Path(importlib.import_module("mistral_common").__file__).parent / "data"  # type: ignore[arg-type]
    sp32k = sentencepiece.SentencePieceProcessor(model_file=str(data / "tokenizer.model.v1"))
    tekken = Tekkenizer.from_file(str(data / "tekken_240911.json"))

    def counted(text: str) -> dict[str, object]:
        return {
            "text": text,
            "sp32k": len(sp32k.encode(text)),
            "tekken131k": len(tekken.encode(text, bos=False, eos=False)),
        }

    with open(sys.argv[1], newline="", encoding="utf-8-sig") as f:
        tickets = [f"{p}\n{c}" for p, c in list(csv.reader(f))[1:]]
    path = HERE / "token_counts.json"
    old = json.loads(path.read_text(encoding="utf-8"))
    new = {
        "about": old["about"],
        "prose": [counted(t) for t in prose()],
        "tickets": [counted(t) for t in tickets],
        "other_languages": [
            {**counted(s["text"]), "language": s["language"]} for s in old["other_languages"]
        ],
    }
    path.write_text(json.dumps(new, ensure_ascii=False, indent=0), encoding="utf-8")


if __name__ == "__main__":
    main()
