"""The running local runtime's AWS endpoint and its per-run credentials, for whoever runs it.

Each start of `LocalRuntime` makes a new access key id and secret; its AWS endpoint (moto) answers
only requests signed with them (`tunelab.local.aws_guard`). They are written with the endpoint to
`<data-dir>/aws-access.json` (0600, in the 0700 data dir) while the runtime runs, and removed when
it stops. The runtime's own clients, its handlers (through the process's `AWS_*` variables) and
`tunelab local` commands use them:

    from tunelab.local.aws_access import read_access
    access = read_access(data_dir)          # RuntimeNotRunning when no runtime runs on data_dir
    access.client("dynamodb").list_tables()
    session, endpoint = access.session(), access.endpoint_url

and from a shell, `eval "$(tunelab local aws-env)"` sets `AWS_ENDPOINT_URL` and the credentials for
the aws CLI and boto3. Light: boto3 loads only when a session is made.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.local.files import read_private_file, write_private_file

if TYPE_CHECKING:
    import boto3

ACCESS_FILE = "aws-access.json"
_KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


class RuntimeNotRunning(RuntimeError):  # noqa: N818  # named for what happened
    """No local runtime runs on this data dir (no `aws-access.json`)."""


@dataclass(frozen=True)
class AwsAccess:
    """The AWS endpoint of one run of the local runtime and the credentials it accepts."""

    endpoint_url: str
    region: str
    access_key_id: str
    secret_access_key: str

    def __repr__(self) -> str:  # never the secret in a log or a traceback
        return f"AwsAccess(endpoint_url={self.endpoint_url!r}, access_key_id={self.access_key_id!r})"

    def session(self) -> boto3.Session:
        """A boto3 session with these credentials (pass `endpoint_url` to its clients)."""
        import boto3  # noqa: PLC0415  # `tunelab local` commands that need no AWS stay quick

        return boto3.Session(
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            region_name=self.region,
        )

    def client(self, service: str, **options: Any) -> Any:
        """A boto3 client of `service` on the endpoint, with these credentials."""
        return self.session().client(service, endpoint_url=self.endpoint_url, **options)  # type: ignore[call-overload]

    def environment(self) -> dict[str, str]:
        """The variables that point the aws CLI and boto3 at the endpoint with these credentials."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
        }


def new_access(endpoint_url: str, region: str) -> AwsAccess:
    """Fresh random credentials for a run on `endpoint_url` (an AWS-shaped key id, a 40-char secret)."""
    key_id = "AKIA" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(16))
    return AwsAccess(
        endpoint_url=endpoint_url,
        region=region,
        access_key_id=key_id,
        secret_access_key=secrets.token_urlsafe(30),
    )


def access_file(data_dir: Path) -> Path:
    return data_dir / ACCESS_FILE


def write_access(data_dir: Path, access: AwsAccess) -> Path:
    """Keep `access` in the data dir (0600) for the `tunelab local` commands of this run."""
    path = access_file(data_dir)
    write_private_file(path, json.dumps(asdict(access), indent=2) + "\n")
    return path


def read_access(data_dir: Path) -> AwsAccess:
    """The endpoint and credentials of the runtime running on `data_dir`.

    `RuntimeNotRunning` when none runs there; `files.UnsafeFile` when the file is not private.
    """
    path = access_file(data_dir)
    try:
        content = json.loads(read_private_file(path))
    except FileNotFoundError:
        raise RuntimeNotRunning(
            f"no tunelab local runtime runs on the data dir {data_dir} (no {ACCESS_FILE}): start one with "
            "`tunelab local up`"
        ) from None
    return AwsAccess(**{name: str(content[name]) for name in AwsAccess.__dataclass_fields__})


def remove_access(data_dir: Path, access: AwsAccess) -> None:
    """Remove the file when it still holds `access` (a later run's stays)."""
    path = access_file(data_dir)
    try:
        if read_access(data_dir) == access:
            path.unlink()
    except (RuntimeNotRunning, OSError, ValueError, KeyError):  # not there, not ours, not readable
        pass
