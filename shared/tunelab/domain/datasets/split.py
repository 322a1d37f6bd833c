"""Deterministic validation split: the same rows go to validation every time, decided row by row."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Literal, TypeVar

from tunelab.domain.errors import ValidationFailed

DEFAULT_SPLIT_KEY = "tunelab-split-v1"
MIN_PERCENT, MAX_PERCENT = 1, 50
_SCALE = 1 << 64
_MASK = _SCALE - 1

T = TypeVar("T")
Side = Literal["train", "validation"]


def _mix(x: int) -> int:
    """splitmix64's finalizer: a fast, well-spread 64-bit mix (not for secrets; for even spread)."""
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _MASK
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _MASK
    return x ^ (x >> 31)


class SplitPlan:
    """Which of `rows` data rows (counted 1..rows among the valid rows, in file order) validate.

    A row goes to validation when a keyed hash of its ordinal falls below `percent`% of the hash
    range, so the split is the same on every run, on every machine, for the same key; and it is
    decided per row, so a file of any size streams through it. The counts follow `percent` within
    sampling noise (±~2·√rows). Both sides are never empty: with no row below the threshold,
    the row of smallest hash validates; with every row below it, the row of largest hash trains.
    """

    def __init__(self, rows: int, percent: int, *, key: str = DEFAULT_SPLIT_KEY) -> None:
        if (
            isinstance(percent, bool)
            or not isinstance(percent, int)
            or not MIN_PERCENT <= percent <= MAX_PERCENT
        ):
            raise ValidationFailed.of(
                "validation.percent",
                f"the validation split must be a whole percent from {MIN_PERCENT} to {MAX_PERCENT}",
            )
        if rows < 2:
            raise ValidationFailed.of(
                "validation.percent",
                f"a validation split needs at least 2 data rows; the dataset has {rows}",
            )
        self.rows = rows
        self.percent = percent
        self._salt = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")
        self._threshold = _SCALE * percent // 100
        self._force_validation: int | None = None
        self._force_train: int | None = None
        self._settle_small()

    def _hash(self, ordinal: int) -> int:
        return _mix((ordinal * 0x9E3779B97F4A7C15 + self._salt) & _MASK)

    def _settle_small(self) -> None:
        # Stops as soon as both sides have a row, which for any real dataset is within a few rows.
        any_validation = any_train = False
        lowest = highest = (0, 0)
        for ordinal in range(1, self.rows + 1):
            h = self._hash(ordinal)
            if h < self._threshold:
                any_validation = True
            else:
                any_train = True
            if any_validation and any_train:
                return
            if ordinal == 1 or h < lowest[0]:
                lowest = (h, ordinal)
            if ordinal == 1 or h > highest[0]:
                highest = (h, ordinal)
        if not any_validation:
            self._force_validation = lowest[1]
        if not any_train:
            self._force_train = highest[1]

    def is_validation(self, ordinal: int) -> bool:
        """Whether the `ordinal`-th valid row (1-based) goes to validation."""
        if ordinal == self._force_validation:
            return True
        if ordinal == self._force_train:
            return False
        return self._hash(ordinal) < self._threshold

    def validation_rows(self) -> int:
        """How many rows validate (a pass over the ordinals, no data read)."""
        return sum(1 for i in range(1, self.rows + 1) if self.is_validation(i))

    def side(self, ordinal: int) -> Side:
        return "validation" if self.is_validation(ordinal) else "train"


def assign(rows: Iterable[T], plan: SplitPlan) -> Iterator[tuple[Side, T]]:
    """Each row with its side, streaming; rows are counted in the order given, from 1."""
    for ordinal, row in enumerate(rows, start=1):
        yield plan.side(ordinal), row


def split(rows: Sequence[T], percent: int, *, key: str = DEFAULT_SPLIT_KEY) -> tuple[list[T], list[T]]:
    """(train, validation) of rows held in memory; for files, stream with `SplitPlan` and `assign`."""
    plan = SplitPlan(len(rows), percent, key=key)
    train: list[T] = []
    validation: list[T] = []
    for ordinal, row in enumerate(rows, start=1):
        (validation if plan.is_validation(ordinal) else train).append(row)
    return train, validation
