"""Where the base model comes from: a channel (unpacked when it is model.tar.gz), a folder, a hub id."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest

from trainer.errors import TrainerInputError
from trainer.model_source import resolve_base_model

pytestmark = pytest.mark.xdist_group("trainer")


def test_a_model_channel_wins_over_the_hyperparameter(tmp_path, tiny_model_dir):
    channel = tmp_path / "model"
    shutil.copytree(tiny_model_dir, channel)

    base = resolve_base_model("org/recorded-name", channel, tmp_path / "work")

    assert (base.load_from, base.source, base.name) == (str(channel), "channel", "org/recorded-name")
    assert base.adapter_dir is None


def test_a_channel_holding_model_tar_gz_is_unpacked(tmp_path, tiny_model_dir):
    channel = tmp_path / "model"
    channel.mkdir()
    with tarfile.open(channel / "model.tar.gz", "w:gz") as archive:
        for path in tiny_model_dir.iterdir():
            archive.add(path, arcname=path.name)

    base = resolve_base_model(None, channel, tmp_path / "work")

    assert Path(base.load_from) == tmp_path / "work" / "base-model"
    assert (Path(base.load_from) / "model.safetensors").is_file()


def test_an_earlier_adapter_loads_on_the_base_it_names(tmp_path):
    earlier = tmp_path / "earlier"
    (earlier / "adapter").mkdir(parents=True)
    (earlier / "adapter" / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": "org/base"})
    )
    (earlier / "tokenizer.json").write_text("{}")

    base = resolve_base_model(str(earlier), None, tmp_path / "work")

    assert (base.load_from, base.tokenizer_from) == ("org/base", str(earlier))
    assert base.adapter_dir == earlier / "adapter"


def test_a_hub_id_is_loaded_by_name_and_a_missing_folder_is_refused(tmp_path):
    assert resolve_base_model("Qwen/Qwen2.5-0.5B-Instruct", None, tmp_path).source == "hub"
    with pytest.raises(TrainerInputError, match="does not exist"):
        resolve_base_model("/no/such/folder", None, tmp_path)
    with pytest.raises(TrainerInputError, match="no base model"):
        resolve_base_model(None, None, tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    with pytest.raises(TrainerInputError, match="neither model weights"):
        resolve_base_model(None, empty, tmp_path)
