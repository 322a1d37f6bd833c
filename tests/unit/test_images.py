"""The Hugging Face image table (generated at build time) and the trainer's metric definitions."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from tunelab.adapters.providers.images import (
    inference_image,
    llm_inference_image,
    load_images,
    training_image,
)
from tunelab.domain.errors import ValidationFailed

ROOT = Path(__file__).resolve().parents[2]
COPY = ROOT / "shared" / "tunelab" / "catalog_data" / "trainer_metric_definitions.json"
TRAINER_FILE = ROOT / "trainer" / "metric_definitions.json"
# ECR hosts of every partition (aws, aws-cn, and the isolated ones the SDK also knows).
ECR = re.compile(r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.[a-z0-9.-]+/[a-z0-9-]+:[\w.-]+$")


def test_every_region_has_an_ecr_image_of_the_pinned_versions() -> None:
    images = load_images()
    assert images.training.images
    assert images.inference.images
    assert images.llm_inference.images
    for scope in (images.training, images.inference, images.llm_inference):
        for region, uri in scope.images.items():
            assert ECR.match(uri), uri
            assert f".{region}." in uri
            assert f"/{scope.repository}:" in uri
    # Training runs the trainer, which needs transformers 5 (trainer/requirements.txt).
    assert images.training.transformers_version is not None
    assert images.training.transformers_version.startswith("5.")
    assert f"transformers{images.training.transformers_version}" in images.training.images["us-east-1"]


def test_lookups_by_region() -> None:
    assert "huggingface-pytorch-training" in training_image("eu-west-1")
    assert "huggingface-pytorch-inference" in inference_image("eu-west-1")
    assert "tgi" in llm_inference_image("us-west-2")


def test_an_unknown_region_is_a_clear_error() -> None:
    with pytest.raises(ValidationFailed) as caught:
        training_image("mars-north-1")
    assert "mars-north-1" in str(caught.value)
    assert "us-east-1" in str(caught.value)


@pytest.mark.slow
def test_the_committed_file_matches_what_the_sdk_resolves_now() -> None:
    spec = importlib.util.spec_from_file_location("resolve_images", ROOT / "infra" / "resolve_images.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    committed = json.loads((ROOT / "shared" / "tunelab" / "catalog_data" / "hf_images.json").read_text())
    fresh = module.resolve(as_of=committed["as_of"])

    assert fresh == committed, "hf_images.json is out of date: run .venv/bin/python infra/resolve_images.py"


def _metrics(line: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for definition in json.loads(COPY.read_text()):
        match = re.search(definition["Regex"], line)
        if match:
            found[definition["Name"]] = float(match.group(1))
    return found


def test_metric_definitions_read_the_trainers_log_lines() -> None:
    # The lines trainer/reporting.py prints.
    train = _metrics("train_loss=0.1234 learning_rate=0.0001 grad_norm=0.52 step=10 epoch=0.5")
    assert train["train_loss"] == 0.1234
    assert train["epoch"] == 0.5
    assert _metrics("eval_loss=1.5e-01 step=20 epoch=1.0")["eval_loss"] == 0.15
    assert _metrics("loading the tokenizer") == {}
    for definition in json.loads(COPY.read_text()):
        # SageMaker's MetricDefinition limits.
        assert 1 <= len(definition["Name"]) <= 255
        assert 1 <= len(definition["Regex"]) <= 500


def test_the_copy_equals_the_trainers_metric_definitions() -> None:
    assert json.loads(COPY.read_text()) == json.loads(TRAINER_FILE.read_text())
