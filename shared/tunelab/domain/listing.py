"""What a list of models or datasets returns and in what order: the filters and sort of
`GET /v1/fine-tuned-models` and `GET /v1/datasets`, checked here once. `matches` and `sort_key` say
what a query means; the DynamoDB store turns the same query into key conditions and filter
expressions, the tests' fakes apply it as written here.

Times: `created_after` is inclusive (created at or after), `created_before` exclusive (created
before), so two adjacent ranges never both hold a record. Name prefixes compare case-insensitively,
as names are unique case-insensitively.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Literal, get_args

from pydantic import AwareDatetime, BaseModel, ConfigDict, field_validator, model_validator

from tunelab.domain.catalog import Provider
from tunelab.domain.errors import ValidationFailed
from tunelab.domain.records import DatasetRecord, ModelRecord, dataset_ids
from tunelab.domain.status import DatasetStatus, ModelStatus, parse_status

SortField = Literal["created_at", "name"]
SortOrder = Literal["asc", "desc"]
DATASET_STATUSES: tuple[str, ...] = get_args(DatasetStatus)
# A prefix of a model's or a dataset's name (their first character is a letter or digit).
_PREFIX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class _Query(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    created_after: AwareDatetime | None = None
    created_before: AwareDatetime | None = None
    # Lower case; compared with the lower-cased name.
    name_prefix: str | None = None
    order: SortOrder = "asc"

    @field_validator("name_prefix")
    @classmethod
    def _prefix(cls, value: str | None) -> str | None:
        if value is not None and not _PREFIX_RE.fullmatch(value):
            # Raised as it is (not a ValueError), so the API names the query parameter.
            raise ValidationFailed.of(
                "name_prefix",
                f"name_prefix '{value}' cannot begin a name: names start with a letter or digit and "
                "hold only letters, digits, '.', '_' and '-'.",
            )
        return None if value is None else value.lower()

    @model_validator(mode="after")
    def _check(self) -> _Query:
        if self.created_after and self.created_before and self.created_after > self.created_before:
            raise ValidationFailed.of(
                "created_after", "created_after is later than created_before; nothing can match."
            )
        return self

    def _common_match(self, name: str, created_at: datetime) -> bool:
        return (
            (self.name_prefix is None or name.lower().startswith(self.name_prefix))
            and (self.created_after is None or created_at >= self.created_after)
            and (self.created_before is None or created_at < self.created_before)
        )


class ModelQuery(_Query):
    """Filters and order of the workspace's fine-tuned models (default: by name, A to Z)."""

    # Empty: any status.
    statuses: frozenset[ModelStatus] = frozenset()
    provider: Provider | None = None
    base_model_id: str | None = None
    # Models that train or validate on this dataset.
    dataset_id: str | None = None
    # The creator's email, exactly.
    creator: str | None = None
    sort: SortField = "name"

    def matches(self, model: ModelRecord) -> bool:
        return (
            self._common_match(model.name, model.created_at)
            and (not self.statuses or model.status in self.statuses)
            and (self.provider is None or model.provider == self.provider)
            and (self.base_model_id is None or model.base_model_id == self.base_model_id)
            and (self.dataset_id is None or self.dataset_id in dataset_ids(model))
            and (self.creator is None or model.created_by.email == self.creator)
        )

    def restricted_to(self, statuses: Iterable[ModelStatus] | None) -> ModelQuery | None:
        """This query also limited to `statuses` (None: unchanged); None when no status is left."""
        if statuses is None:
            return self
        wanted = frozenset(ModelStatus(s) for s in statuses)
        narrowed = (self.statuses & wanted) if self.statuses else wanted
        return self.model_copy(update={"statuses": narrowed}) if narrowed else None

    def sort_key(self, model: ModelRecord) -> str:
        return _sort_key(self.sort, model.name, model.created_at)


class DatasetQuery(_Query):
    """Filters and order of the workspace's datasets (default: by creation, oldest first)."""

    statuses: frozenset[DatasetStatus] = frozenset()
    sort: SortField = "created_at"

    def matches(self, dataset: DatasetRecord) -> bool:
        return self._common_match(dataset.name, dataset.created_at) and (
            not self.statuses or dataset.status in self.statuses
        )

    def restricted_to(self, statuses: Iterable[str] | None) -> DatasetQuery | None:
        """This query also limited to `statuses` (None: unchanged); None when no status is left."""
        if statuses is None:
            return self
        wanted = frozenset(s for s in DATASET_STATUSES if s in set(statuses))
        narrowed = (self.statuses & wanted) if self.statuses else wanted
        return self.model_copy(update={"statuses": narrowed}) if narrowed else None

    def sort_key(self, dataset: DatasetRecord) -> str:
        return _sort_key(self.sort, dataset.name, dataset.created_at, dataset.dataset_id)


def _sort_key(sort: SortField, name: str, created_at: datetime, tie: str = "") -> str:
    """The list order as text (times of one width, then a tie-breaker)."""
    if sort == "name":
        return name.lower()
    return created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "#" + (tie or name.lower())


# --- parsing what a user typed ----------------------------------------------------------------


def _split(values: Iterable[str] | str | None) -> list[str]:
    """`a,b` and repeated values alike, blanks dropped."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def parse_model_statuses(values: Iterable[str] | str | None) -> frozenset[ModelStatus]:
    return frozenset(parse_status(v, "status") for v in _split(values))


def parse_dataset_statuses(values: Iterable[str] | str | None) -> frozenset[DatasetStatus]:
    found: set[DatasetStatus] = set()
    for value in _split(values):
        if value.lower() not in DATASET_STATUSES:
            raise ValidationFailed.of(
                "status", f"Unknown status '{value}'; valid statuses: {', '.join(DATASET_STATUSES)}."
            )
        found.add(value.lower())  # type: ignore[arg-type]  # checked just above
    return frozenset(found)


def parse_time(value: str | None, field: str) -> datetime | None:
    """An ISO 8601 time (`2026-11-28T12:00:00Z`, with an offset, or a date: its midnight); one without
    a zone is UTC, as every time of the API is."""
    if value is None or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValidationFailed.of(
            field, f"{field} '{value}' is not an ISO 8601 time, e.g. 2026-11-28T12:00:00Z or 2026-11-28."
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
