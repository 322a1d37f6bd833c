"""JSON Lines writers for each provider's training-data format, in batches for speed.

- `prompt_completion` (Bedrock): `{"prompt": "...", "completion": "..."}`
- `bedrock_conversation` (Bedrock, Nova): the `bedrock-conversation-2024` schema,
  `{"schemaVersion": "bedrock-conversation-2024", "system": [{"text": ...}], "messages":
  [{"role": "user", "content": [{"text": prompt}]}, {"role": "assistant", "content": [{"text":
  completion}]}]}` with `system` only when a system prompt is given (it is optional). Shape per
  https://docs.aws.amazon.com/bedrock/latest/userguide/nova-2-sft-data-prep.html (text-only example)
  and the Nova user guide's "Preparing data for fine-tuning Understanding models".
- `trainer_jsonl` (the trainer, SageMaker and local): `{"prompt": "...", "completion": "..."}`.
"""

from __future__ import annotations

from collections.abc import Iterable
from json.encoder import (  # the C versions where available (json's own choice)
    encode_basestring,
    encode_basestring_ascii,
)
from typing import BinaryIO

from tunelab.domain.catalog import TrainingDataFormat
from tunelab.domain.datasets.reader import Row
from tunelab.domain.errors import ValidationFailed

CONVERSATION_SCHEMA_VERSION = "bedrock-conversation-2024"


_PROMPT_COMPLETION = (b'{"prompt": "', b'", "completion": "', b'"}\n')


def _conversation_template(system: str | None) -> tuple[bytes, bytes, bytes]:
    head = f'{{"schemaVersion": "{CONVERSATION_SCHEMA_VERSION}", '
    if system is not None:
        head += f'"system": [{{"text": {encode_basestring(system)}}}], '
    return (
        (head + '"messages": [{"role": "user", "content": [{"text": "').encode(),
        b'"}]}, {"role": "assistant", "content": [{"text": "',
        b'"}]}]}\n',
    )


def templates(fmt: TrainingDataFormat, *, system: str | None = None) -> tuple[bytes, bytes, bytes]:
    """(before the prompt, between prompt and completion, after the completion) of one JSON line."""
    if fmt in ("prompt_completion", "trainer_jsonl"):
        if system is not None:
            raise ValidationFailed.of("system", f"the {fmt} format has no system prompt")
        return _PROMPT_COMPLETION
    if fmt == "bedrock_conversation":
        return _conversation_template(system)
    raise ValidationFailed.of("training_data_format", f"unknown training data format {fmt!r}")


def _escape(value: str) -> bytes:
    """A JSON string's inside, as json.dumps(ensure_ascii=False) writes it, in UTF-8."""
    try:
        return encode_basestring(value)[1:-1].encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: only json's ASCII escaping can write it
        return encode_basestring_ascii(value)[1:-1].encode("ascii")


# Control characters that need \uXXXX escapes (NUL is the batch's separator, checked apart).
_RARE_CONTROLS = bytes(c for c in range(1, 32) if c not in (9, 10, 13))


class JsonlWriter:
    """Writes rows as JSON Lines of one format to a binary stream, in batches of ~`batch_bytes`.

    A batch is escaped at once: its fields are joined with NUL, encoded, the five common escapes
    done with `bytes.replace` (C speed) and the result split again; a batch with a NUL or a rare
    control character inside a field is written row by row with the json module's escaping
    instead. Both give the bytes `json.dumps(..., ensure_ascii=False)` gives.
    Batches stay small (64 KiB) so their temporaries come from the heap, not fresh mmap'd pages:
    that halves the cost against 1 MiB batches.
    """

    def __init__(
        self,
        out: BinaryIO,
        fmt: TrainingDataFormat,
        *,
        system: str | None = None,
        batch_bytes: int = 1 << 16,
    ) -> None:
        self._out = out
        self._before, self._between, self._after = templates(fmt, system=system)
        self._fields: list[str] = []
        self._pending = 0
        self._batch_chars = batch_bytes
        self.rows = 0

    def write(self, row: Row) -> None:
        fields = self._fields
        fields.append(row.prompt)
        fields.append(row.completion)
        self._pending += len(row.prompt) + len(row.completion)
        if self._pending >= self._batch_chars:
            self.flush()

    def flush(self) -> None:
        fields = self._fields
        if not fields:
            return
        rows = len(fields) // 2
        data = self._fast(fields, rows)
        if data is None:
            data = self._slow(fields)
        self._out.write(data)
        self.rows += rows
        fields.clear()
        self._pending = 0

    def _fast(self, fields: list[str], rows: int) -> bytes | None:
        try:
            joined = "\x00".join(fields).encode("utf-8")
        except UnicodeEncodeError:
            return None
        if len(joined.translate(None, _RARE_CONTROLS)) != len(joined):
            return None
        escaped = (
            joined.replace(b"\\", b"\\\\")
            .replace(b'"', b'\\"')
            .replace(b"\n", b"\\n")
            .replace(b"\r", b"\\r")
            .replace(b"\t", b"\\t")
        )
        parts = escaped.split(b"\x00")
        if len(parts) != len(fields):  # a field held a NUL of its own
            return None
        before, between, after = self._before, self._between, self._after
        out = [after + before] * (4 * rows)
        out[0] = before
        out[1::4] = parts[0::2]
        out[2::4] = [between] * rows
        out[3::4] = parts[1::2]
        out.append(after)
        return b"".join(out)

    def _slow(self, fields: list[str]) -> bytes:
        before, between, after = self._before, self._between, self._after
        out: list[bytes] = []
        for i in range(0, len(fields), 2):
            out += (before, _escape(fields[i]), between, _escape(fields[i + 1]), after)
        return b"".join(out)

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()


def write_jsonl(
    rows: Iterable[Row], out: BinaryIO, fmt: TrainingDataFormat, *, system: str | None = None
) -> int:
    """Write `rows` to `out` as JSON Lines of `fmt`; returns how many rows were written."""
    with JsonlWriter(out, fmt, system=system) as writer:
        for row in rows:
            writer.write(row)
    return writer.rows
