"""The fault suite: faults injected through botocore's event hooks or the local runtime (never by
patching tunelab's own functions), each case checking that every record rests, nothing acknowledged
is lost, nothing at a provider is orphaned and every finished job sent exactly one email.

Each case adds its figures to `tally.TALLY` (the `tally` fixture); `tests/conftest.py` adds up
those of every pytest worker and prints them at the end of the run.
"""

from __future__ import annotations

import pytest

from tests.faults.tally import TALLY, Tally


@pytest.fixture
def tally() -> Tally:
    """This process's figures: `tally.injected(kind, n)`, then `tally.outcome(...)` once settled."""
    return TALLY
