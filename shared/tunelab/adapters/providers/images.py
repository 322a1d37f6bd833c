"""Hugging Face container images per region, read from `catalog_data/hf_images.json`.

The file is generated at build time by `infra/resolve_images.py` from the SageMaker SDK's image
catalog, so no Lambda function imports the SDK.
"""

from __future__ import annotations

import json
from datetime import date
from functools import cache
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict

from tunelab.domain.errors import ValidationFailed

ImageScope = Literal["training", "inference", "llm_inference"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)  # built on first load


class ImageSource(_Frozen):
    sdk: str
    sdk_version: str
    function: str
    trainer_transformers: str


class ImageSet(_Frozen):
    framework: str
    repository: str
    py_version: str
    transformers_version: str | None = None
    pytorch_version: str | None = None
    tgi_version: str | None = None
    images: dict[str, str]


class HfImages(_Frozen):
    as_of: date
    source: ImageSource
    training: ImageSet
    inference: ImageSet
    llm_inference: ImageSet

    def scope(self, scope: ImageScope) -> ImageSet:
        return {"training": self.training, "inference": self.inference, "llm_inference": self.llm_inference}[
            scope
        ]


# Read once per process: the shipped file never changes while it runs (a warm Lambda reuses it).
@cache
def load_images() -> HfImages:
    """The shipped image table, validated."""
    text = resources.files("tunelab").joinpath("catalog_data", "hf_images.json").read_text(encoding="utf-8")
    return HfImages.model_validate(json.loads(text))


def image_uri(scope: ImageScope, region: str) -> str:
    """The image for `scope` in `region`; ValidationFailed naming the regions that have it otherwise."""
    images = load_images().scope(scope).images
    try:
        return images[region]
    except KeyError:
        raise ValidationFailed.of(
            "region",
            f"The Hugging Face {scope.replace('_', ' ')} image is not offered in {region}; "
            f"choose one of: {', '.join(sorted(images))}.",
        ) from None


def training_image(region: str) -> str:
    return image_uri("training", region)


def inference_image(region: str) -> str:
    return image_uri("inference", region)


def llm_inference_image(region: str) -> str:
    """Text Generation Inference (TGI): what tunelab's SageMaker endpoints serve LLMs with."""
    return image_uri("llm_inference", region)
