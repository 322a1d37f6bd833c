"""The fault suite's figures: faults injected by kind, and what was found after each case.

Every case records the faults it injected (`injected("dynamodb throttling", 3)`) and, after the
system settled, what it counted (`outcome(transient=..., lost=..., orphaned=..., duplicate_emails=...)`)
— and asserts those counts are 0 itself. `conftest.py` adds the figures of every pytest worker and
prints them at the end of the run (`make test`, `make faults`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

OUTCOMES = (
    ("transient", "records left in a transient status"),
    ("lost", "acknowledged writes lost"),
    ("orphaned", "provider resources without an owning record"),
    ("duplicate_emails", "duplicate emails"),
    ("missing_emails", "finished jobs without their email"),
)


@dataclass
class Tally:
    """What this process's cases injected and found."""

    faults: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    cases: int = 0

    def injected(self, kind: str, count: int = 1) -> None:
        """`count` faults of `kind` ("s3 5xx", "sigkill mid-training", ...) were injected."""
        if count:
            self.faults[kind] += count

    def outcome(
        self,
        *,
        transient: int = 0,
        lost: int = 0,
        orphaned: int = 0,
        duplicate_emails: int = 0,
        missing_emails: int = 0,
    ) -> None:
        """What one case found once everything settled (each figure should be 0)."""
        self.cases += 1
        self.outcomes.update(
            {
                "transient": transient,
                "lost": lost,
                "orphaned": orphaned,
                "duplicate_emails": duplicate_emails,
                "missing_emails": missing_emails,
            }
        )

    def to_json(self) -> dict[str, Any]:
        return {"faults": dict(self.faults), "outcomes": dict(self.outcomes), "cases": self.cases}

    def add(self, data: dict[str, Any]) -> None:
        self.faults.update(data.get("faults", {}))
        self.outcomes.update(data.get("outcomes", {}))
        self.cases += int(data.get("cases", 0))

    def lines(self) -> list[str]:
        if not self.cases and not self.faults:
            return []
        width = max([len(kind) for kind in self.faults] + [len(text) for _, text in OUTCOMES])
        lines = [f"fault cases settled: {self.cases}", "faults injected, by kind:"]
        lines += [f"  {kind:<{width}}  {count:>6}" for kind, count in sorted(self.faults.items())]
        lines.append(f"  {'total':<{width}}  {sum(self.faults.values()):>6}")
        lines.append("after every case:")
        lines += [f"  {text:<{width}}  {self.outcomes.get(key, 0):>6}" for key, text in OUTCOMES]
        return lines


TALLY = Tally()
