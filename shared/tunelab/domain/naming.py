"""Fine-tuned model names.

A name becomes the SageMaker training job name (and the prefix of the provider resources made
from it), so it follows SageMaker's rules for job names: 1–63 characters, letters, digits and
hyphens, starting and ending with a letter or digit. Uniqueness is checked later, by the
model store (in the workspace) and by the provider (in its account and region).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from tunelab.domain.errors import ErrorDetail, ValidationFailed

MAX_NAME_LENGTH = 63
# Only ASCII: `str.isalnum` would let "é" or "٣" through, which SageMaker refuses.
_ALLOWED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-")
_ALNUM = _ALLOWED - {"-"}
NAME_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
_NAME_RE = re.compile(NAME_PATTERN)

NAME_RULES = (
    "1–63 characters; letters (A–Z, a–z), digits and hyphens only; starts and ends with a letter or digit"
)


def _describe(char: str) -> str:
    if char == " ":
        return "spaces"
    if char == "_":
        return "underscores ('_')"
    if char.isspace() or not char.isprintable():
        return f"the character {unicodedata.name(char, f'U+{ord(char):04X}')}"
    return f"'{char}'"


def name_problems(name: str) -> list[str]:
    """Every naming rule `name` breaks, each as a sentence naming the rule; empty when it is valid."""
    if name == "":
        return ["Name is empty: it must be 1–63 characters."]
    problems: list[str] = []
    if len(name) > MAX_NAME_LENGTH:
        problems.append(f"Name is {len(name)} characters long: it must be at most {MAX_NAME_LENGTH}.")
    bad = list(dict.fromkeys(c for c in name if c not in _ALLOWED))
    if bad:
        shown = ", ".join(_describe(c) for c in bad[:5]) + (", …" if len(bad) > 5 else "")
        problems.append(f"Name may contain only letters (A–Z, a–z), digits and hyphens; it contains {shown}.")
    if name[0] not in _ALNUM and name[0] in _ALLOWED:
        problems.append("Name must start with a letter or digit, not a hyphen.")
    if name[-1] not in _ALNUM and name[-1] in _ALLOWED:
        problems.append("Name must end with a letter or digit, not a hyphen.")
    return problems


def is_valid_name(name: str) -> bool:
    return _NAME_RE.fullmatch(name) is not None


def check_model_name(name: str, field: str = "name") -> str:
    """`name` when it follows the naming rules; else `ValidationFailed` listing each rule it breaks."""
    problems = name_problems(name)
    if not problems:
        return name
    raise ValidationFailed(
        problems[0] if len(problems) == 1 else f"Name breaks {len(problems)} rules: " + " ".join(problems),
        [ErrorDetail(field=field, message=p) for p in problems],
    )


def _pydantic_check(name: str) -> str:
    problems = name_problems(name)
    if problems:
        # A custom error keeps our sentence as the message (a ValueError would be prefixed
        # "Value error, ") and carries the rules in `ctx` for clients that want them.
        raise PydanticCustomError("model_name", " ".join(problems), {"rules": NAME_RULES})
    return name


ModelName = Annotated[
    str,
    AfterValidator(_pydantic_check),
    Field(
        description=f"The fine-tuned model's name: {NAME_RULES}. Unique in the workspace.",
        examples=["support-bot-v1"],
        # Documented in the OpenAPI schema; enforced by the validator so a failure names the rule.
        json_schema_extra={"minLength": 1, "maxLength": MAX_NAME_LENGTH, "pattern": NAME_PATTERN},
    ),
]


# --- datasets ---------------------------------------------------------------------------------

DATASET_ID_PATTERN = r"^ds_[0-9a-z]{8,40}$"
DatasetId = Annotated[
    str,
    Field(
        pattern=DATASET_ID_PATTERN,
        description="A dataset id from `POST /v1/datasets` (`ds_` and lower-case letters and digits).",
        examples=["ds_01jdq8k2m3n4p5q6r7s8t9v0w1"],
    ),
]

DatasetName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="The dataset's name: 1–100 letters, digits, '.', '_' or '-', starting with a letter "
        "or digit. Unique in the workspace.",
        examples=["support-tickets"],
    ),
]
