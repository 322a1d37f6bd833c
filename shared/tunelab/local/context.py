"""What the local runtime tells the parts it starts (the local provider) about the stack it made."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LocalContext:
    """The embedded stack as its users see it; `endpoint_url` is the moto server every client uses."""

    data_dir: Path
    endpoint_url: str
    region: str
    event_bus_name: str
    artifacts_bucket: str
    datasets_bucket: str
    account_id: str
