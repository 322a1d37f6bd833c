"""`tunelab local up --model-dir NAME=PATH`: operator folders become local base models."""

from __future__ import annotations

import argparse
import json
import struct
from pathlib import Path

import pytest

from tunelab.local.cli_local import EXIT_USAGE, add_local_commands, register_model_dirs, run_up
from tunelab.local.models import local_catalog


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tunelab")
    add_local_commands(parser.add_subparsers(dest="command"))
    return parser


def _hf_folder(root: Path) -> Path:
    """A minimal Hugging Face folder: config, tokenizer and a safetensors file of zeros."""
    root.mkdir(parents=True)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "max_position_embeddings": 512}
    (root / "config.json").write_text(json.dumps(config))
    (root / "tokenizer.json").write_text("{}")
    header = json.dumps({"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]}}).encode()
    (root / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 64)
    return root


def test_repeated_model_dirs_are_parsed_and_registered(tmp_path: Path) -> None:
    first, second = _hf_folder(tmp_path / "a"), _hf_folder(tmp_path / "b")
    args = _parser().parse_args(
        ["local", "up", "--model-dir", f"alpha={first}", "--model-dir", f"beta={second}"]
    )

    ids = register_model_dirs(args.model_dir, tmp_path / "data")

    assert args.model_dir == [("alpha", first), ("beta", second)]
    assert ids == ["local.alpha", "local.beta"]
    catalog_ids = {m.id for m in local_catalog(tmp_path / "data").models}
    assert {"local.alpha", "local.beta"} <= catalog_ids


def test_a_model_dir_without_a_name_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parser().parse_args(["local", "up", "--model-dir", "/just/a/path"])

    assert exit_info.value.code == 2
    assert "NAME=PATH" in capsys.readouterr().err


def test_a_folder_that_is_no_model_stops_local_up_before_it_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    args = _parser().parse_args(
        ["local", "up", "--data-dir", str(tmp_path / "data"), "--model-dir", f"broken={empty}"]
    )

    assert run_up(args) == EXIT_USAGE
    assert "config.json" in capsys.readouterr().err
    assert not (tmp_path / "data" / "models.json").exists()
