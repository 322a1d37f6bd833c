"""The trainer's own defaults are the catalog's SageMaker defaults: a run without values trains the same."""

from __future__ import annotations

import pytest

from trainer import evaluation as trainer_evaluation
from trainer.hyperparameters import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_LEARNING_RATE,
    DEFAULT_WARMUP_STEPS,
    EVALUATION_DEFAULTS,
    EVALUATION_RANGES,
    parse_hyperparameters,
)
from tunelab.domain import evaluation, hyperparameters
from tunelab.domain.catalog import BaseModelSpec, load_catalog
from tunelab.domain.costs import EVALUATION_BATCH_ROWS

SAGEMAKER = [spec for spec in load_catalog().models if spec.provider == "sagemaker"]


def test_the_catalog_has_sagemaker_models() -> None:
    assert SAGEMAKER


@pytest.mark.parametrize("spec", SAGEMAKER, ids=lambda spec: spec.id)
def test_the_trainer_defaults_equal_the_catalog_sagemaker_defaults(spec: BaseModelSpec) -> None:
    ranges = spec.hyperparameters
    assert ranges.batch_size is not None  # every SageMaker model offers both
    assert ranges.warmup_steps is not None
    catalog = (
        ranges.epochs.default,
        ranges.learning_rate.default,
        ranges.batch_size.default,
        ranges.warmup_steps.default,
    )
    trainer = parse_hyperparameters({})
    batch = ranges.batch_size.default
    if batch != DEFAULT_BATCH_SIZE:
        # A smaller default batch where the memory model found the trainer's does not fit the default
        # instance; the model's notes say so (the platform always sends the batch size).
        assert batch < DEFAULT_BATCH_SIZE
        assert any(f"The default batch size is {batch}, not {DEFAULT_BATCH_SIZE}" in n for n in spec.notes)

    assert catalog == (DEFAULT_EPOCHS, DEFAULT_LEARNING_RATE, batch, DEFAULT_WARMUP_STEPS)
    assert (trainer.epochs, trainer.learning_rate, trainer.warmup_steps) == (
        catalog[0],
        catalog[1],
        catalog[3],
    )


def test_the_trainer_and_the_platform_agree_on_the_evaluation() -> None:
    """The platform checks and prices `evaluation_config` and reads the report; the trainer (which imports
    nothing of tunelab) runs it: the same defaults, ranges, files and format on both sides."""
    platform = hyperparameters.ResolvedEvaluationConfig()
    assert platform.model_dump() == EVALUATION_DEFAULTS
    assert EVALUATION_RANGES == {
        "max_rows": (1, hyperparameters.MAX_EVALUATION_ROWS),
        "max_new_tokens": (1, hyperparameters.MAX_EVALUATION_NEW_TOKENS),
        "samples": (0, hyperparameters.MAX_EVALUATION_SAMPLES),
    }
    assert trainer_evaluation.REPORT_FILE == evaluation.REPORT_FILE
    assert trainer_evaluation.BASE_CACHE_FILE == evaluation.BASE_ANSWERS_FILE
    assert trainer_evaluation.FORMAT_VERSION == evaluation.FORMAT_VERSION
    assert trainer_evaluation.DERIVED_EXTRA_TOKENS == evaluation.DERIVED_EXTRA_TOKENS
    assert trainer_evaluation.DERIVED_MAX_NEW_TOKENS == evaluation.DERIVED_MAX_NEW_TOKENS
    assert trainer_evaluation.BATCH_ROWS == EVALUATION_BATCH_ROWS
