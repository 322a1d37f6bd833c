"""The serving memory rule (`resources.serving_gb`) and the endpoint instance it chooses."""

from __future__ import annotations

import pytest

from tunelab.domain.catalog import load_catalog
from tunelab.domain.errors import ValidationFailed
from tunelab.domain.resources import serving_gb, serving_instance

EIGHT_B = 8_030_261_248
SEVENTY_B = 70_553_706_496


def test_the_rule_is_bf16_weights_with_headroom_and_a_cuda_context_per_gpu() -> None:
    # 8.03B × 2 bytes = 16.06 GB; × 1.2 = 19.27; + 1 GB for each of 4 GPUs.
    assert serving_gb(EIGHT_B, 4) == pytest.approx(16.06052 * 1.2 + 4, rel=1e-4)


def test_the_default_is_kept_when_it_fits_else_the_cheapest_that_fits() -> None:
    instances = load_catalog().instances
    kept = serving_instance(EIGHT_B, instances, requested=None, default="ml.g5.2xlarge")
    assert kept.name == "ml.g5.2xlarge"
    chosen = serving_instance(SEVENTY_B, instances, requested=None, default="ml.g5.2xlarge")
    fitting = [i for i in instances if serving_gb(SEVENTY_B, i.gpus) <= i.vram_gb]
    assert chosen.price_per_hour_usd == min(i.price_per_hour_usd for i in fitting)


def test_a_70b_model_on_one_24gb_gpu_names_the_smallest_that_fits() -> None:
    with pytest.raises(ValidationFailed) as refused:
        serving_instance(SEVENTY_B, load_catalog().instances, requested="ml.g5.xlarge", default=None)
    assert refused.value.details[0].field == "instance_type"
    assert "The smallest that fits is ml.g6e.12xlarge." in refused.value.details[0].message
