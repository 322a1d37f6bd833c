"""Streaming reader of a dataset CSV: rows or per-row errors, in flat memory whatever the file size.

The common case runs in C: the stream is decoded by `io.TextIOWrapper` (UTF-8, BOM allowed,
invalid bytes kept as lone surrogates by `surrogateescape` so a bad byte costs one row, not the
file) and parsed by the stdlib `csv` module in strict mode, fed one physical line at a time so
quoted newlines work. Python code runs per record for the checks, and only a failing record goes
through the slow path that says which column is at fault.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, NamedTuple

from tunelab.domain.errors import ErrorDetail, ValidationFailed

# Accepted header names, compared case-insensitively with surrounding spaces trimmed.
PROMPT_NAMES = frozenset({"prompt"})
COMPLETION_NAMES = frozenset({"completion", "expected completion", "expected_completion"})

DEFAULT_MAX_FIELD_BYTES = 1 << 20  # 1 MiB: far beyond any model's context (~250k tokens)
_READ_CHUNK = 1 << 20


class Row(NamedTuple):
    """One valid data row; `row` is its 1-based number among the data rows (the header excluded)."""

    row: int
    prompt: str
    completion: str


class RowError(NamedTuple):
    """One data row that cannot be used, with every problem found in it."""

    row: int
    errors: tuple[ErrorDetail, ...]


class EmptyRow(NamedTuple):
    """A blank line, or a row whose fields are all blank: skipped, but it keeps its row number."""

    row: int


@dataclass(frozen=True, slots=True)
class Header:
    """Where the two columns are; other named columns are ignored."""

    names: tuple[str, ...]
    prompt_index: int
    completion_index: int

    @property
    def ignored(self) -> tuple[str, ...]:
        return tuple(
            n for i, n in enumerate(self.names) if i not in (self.prompt_index, self.completion_index)
        )

    def column(self, index: int) -> str:
        """The name a user sees for the 0-based field `index` of a row."""
        if index == self.prompt_index:
            return "prompt"
        if index == self.completion_index:
            return "completion"
        if index < len(self.names) and self.names[index].strip():
            return self.names[index].strip()
        return f"column {index + 1}"


class _CountingRaw(io.RawIOBase):
    """Any object with `read(n)` (a file, an S3 StreamingBody) as a raw stream that counts its bytes."""

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        data = self._source.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.bytes_read += n
        return n


class _RecordTooLongError(Exception):
    """A record grew past the memory backstop (almost always an unclosed quote)."""


class _Bad(NamedTuple):
    """A record the csv module refused: its message and the text read for it."""

    message: str
    text: str


_TOO_LONG = _Bad("too long", "")


class _Records:
    """Records of the CSV text: lists of fields, or `_Bad`.

    The fast path parses well-formed records that lie wholly in the current chunk with `str.find`
    (C speed, a few Python steps per field). Anything else (a record across the chunk's end, a
    blank line, a bare CR, text after a closing quote, the end of the file) goes to the stdlib
    `csv` reader in strict mode, fed line by line from the same place, for exactly one record; so
    both paths split the file the same way and the slow one decides every doubtful case.
    """

    def __init__(self, text: io.TextIOWrapper, limit: int) -> None:
        self._text = text
        self.limit = limit
        self._buf = ""
        self._pos = 0
        self._eof = False
        self._pending = 0
        self._record: list[str] = []
        # The last LF search in _buf: the first LF at or after _nl_from is at _nl (-1: none), which
        # stays true for any later start up to _nl. A file of bare CRs then costs one scan a chunk.
        self._nl_from = 1 << 62
        self._nl = -1
        self._csv = csv.reader(self, strict=True)

    # --- the line feed of the slow path: the chunk's rest first, then the stream ---------------

    def __iter__(self) -> _Records:
        return self

    def __next__(self) -> str:
        line = self._line()
        self._pending += len(line)
        if self._pending > self.limit:
            # Drop the rest of this physical line unread into memory, then report the record.
            while line and not line.endswith(("\n", "\r")):
                try:
                    line = self._line()
                except StopIteration:
                    break
            raise _RecordTooLongError
        self._record.append(line)
        return line

    def _line(self) -> str:
        """The next physical line (at most `limit` + 1 characters), ending in CR, LF or CRLF."""
        buf, pos = self._buf, self._pos
        if pos < len(buf):
            nl = self._nl
            if not (self._nl_from <= pos and (nl < 0 or pos <= nl)):
                nl = self._nl = buf.find("\n", pos)
                self._nl_from = pos
            stop = nl if nl >= 0 else len(buf)
            cr = buf.find("\r", pos, stop)
            if cr >= 0:
                end = cr + 1
                if end == len(buf) and not self._eof:
                    # CR at the chunk's end: a CRLF may be split across chunks.
                    nxt = self._text.read(1)
                    self._nl_from = 1 << 62
                    if nxt == "\n":
                        self._buf, self._pos = "", 0
                        return buf[pos:] + nxt
                    self._buf, self._pos = nxt, 0
                    return buf[pos:]
                if end < len(buf) and buf[end] == "\n":
                    end += 1
            elif nl >= 0:
                end = nl + 1
            else:
                # The chunk ends inside this line: the stream has its rest.
                rest = "" if self._eof else self._text.readline(self.limit + 1)
                self._buf, self._pos, self._nl_from = "", 0, 1 << 62
                return buf[pos:] + rest
            if end - pos > self.limit + 1:
                end = pos + self.limit + 1
            self._pos = end
            return buf[pos:end]
        line = self._text.readline(self.limit + 1)
        if not line:
            raise StopIteration
        return line

    def _slow(self) -> list[str] | _Bad | None:
        self._pending = 0
        self._record.clear()
        try:
            return next(self._csv)
        except StopIteration:
            return None
        except csv.Error as error:
            return _Bad(str(error), "".join(self._record))
        except _RecordTooLongError:
            return _TOO_LONG

    # --- records ---------------------------------------------------------------------------------

    def records(self) -> Iterator[list[str] | _Bad]:
        read = self._text.read
        while True:
            buf, pos = self._buf, self._pos
            if pos >= len(buf):
                if self._eof:
                    return
                buf = read(_READ_CHUNK)
                pos = 0
                self._buf, self._pos, self._nl_from = buf, 0, 1 << 62
                if not buf:
                    self._eof = True
                    return
            n = len(buf)
            nl_from, nl = self._nl_from, self._nl
            # Fast path, record by record, while each one is plainly well-formed and complete.
            while True:
                p = pos
                if not (nl_from <= p and (nl < 0 or p <= nl)):
                    nl_from, nl = p, buf.find("\n", p)
                if nl <= p or buf[p] == "\r":
                    break  # no full line left, or a blank line: the slow path decides
                fields: list[str] = []
                done = False
                while True:
                    if buf[p] == '"':
                        q = buf.find('"', p + 1)
                        escaped = False
                        while 0 <= q < n - 1 and buf[q + 1] == '"':
                            escaped = True
                            q = buf.find('"', q + 2)
                        if q < 0 or q >= n - 2:
                            break
                        value = buf[p + 1 : q]
                        fields.append(value.replace('""', '"') if escaped else value)
                        after = buf[q + 1]
                        if after == ",":
                            p = q + 2
                            if 0 <= nl < p:
                                nl_from, nl = p, buf.find("\n", p)
                            if nl < 0:
                                break
                            continue
                        if after == "\n":
                            pos = q + 2
                            done = True
                        elif after == "\r" and buf[q + 2] == "\n":
                            pos = q + 3
                            done = True
                        break
                    comma = buf.find(",", p, nl)
                    end = nl if comma < 0 else comma
                    if comma < 0 and buf[nl - 1] == "\r" and nl - 1 >= p:
                        end = nl - 1
                    if buf.find("\r", p, end) >= 0:
                        break
                    fields.append(buf[p:end])
                    if comma < 0:
                        pos = nl + 1
                        done = True
                        break
                    p = comma + 1
                if not done:
                    break
                yield fields
                if pos >= n:
                    break
            self._buf, self._pos, self._nl_from, self._nl = buf, pos, nl_from, nl
            if pos >= n:
                continue
            record = self._slow()
            if record is None:
                return
            yield record


@dataclass(slots=True)
class ReadStats:
    """What the reader saw besides rows: filled in while reading, final once the iterator ends."""

    size_bytes: int = 0
    header: Header | None = None


def _ensure_csv_limit(chars: int) -> None:
    # The csv field limit is process-wide; raise it when needed, never lower it (others may rely on
    # it). Memory stays bounded by `_Records`' line limit, not by this.
    if csv.field_size_limit() < chars:
        csv.field_size_limit(chars)


def read_rows(
    stream: BinaryIO,
    *,
    max_field_bytes: int = DEFAULT_MAX_FIELD_BYTES,
    stats: ReadStats | None = None,
) -> Iterator[Row | RowError | EmptyRow]:
    """Rows of a dataset CSV, read as a stream.

    Yields a `Row` for each usable data row, a `RowError` for each row with problems (missing or
    extra fields, an empty prompt or completion, invalid UTF-8, a NUL byte, a field over
    `max_field_bytes`, broken quoting) and an `EmptyRow` for each blank row. Row numbers are
    1-based over the records after the header (a quoted newline does not start a new row).

    Raises `ValidationFailed` (field "header") when the file is empty or its first row does not
    name a prompt and a completion column. Nothing else the file contains raises.
    """
    raw = _CountingRaw(stream)
    text = io.TextIOWrapper(
        io.BufferedReader(raw, _READ_CHUNK), encoding="utf-8-sig", errors="surrogateescape", newline=""
    )
    # A record may hold a few fields at the limit; past this it is cut off and reported.
    backstop = 4 * max_field_bytes + 4096
    _ensure_csv_limit(backstop + 1)
    records = _Records(text, backstop).records()
    try:
        header = _read_header(records)
        if stats is not None:
            stats.header = header
        yield from _rows(records, header, max_field_bytes, backstop)
    finally:
        if stats is not None:
            stats.size_bytes = raw.bytes_read


def _header_error(message: str) -> ValidationFailed:
    return ValidationFailed(message, [ErrorDetail(field="header", message=message)])


_HEADER_HELP = "the first row must name the columns: prompt, completion (or 'expected completion')"


def _read_header(records: Iterator[list[str] | _Bad]) -> Header:
    for fields in records:
        if isinstance(fields, _Bad):
            raise _header_error(f"The first row cannot be read as CSV; {_HEADER_HELP}.")
        if any(f.strip() for f in fields):
            break
    else:
        raise _header_error(f"The file has no rows; {_HEADER_HELP}.")
    names = tuple(f.strip() for f in fields)
    folded = [n.casefold() for n in names]
    prompts = [i for i, n in enumerate(folded) if n in PROMPT_NAMES]
    completions = [i for i, n in enumerate(folded) if n in COMPLETION_NAMES]
    if len(prompts) != 1 or len(completions) != 1:
        found = ", ".join(repr(n) for n in names[:5]) + (", ..." if len(names) > 5 else "")
        problem = "names more than one" if len(prompts) > 1 or len(completions) > 1 else "is"
        raise _header_error(f"The header {problem} {found}; {_HEADER_HELP}.")
    return Header(names=names, prompt_index=prompts[0], completion_index=completions[0])


def _rows(
    records: Iterator[list[str] | _Bad], header: Header, max_field_bytes: int, backstop: int
) -> Iterator[Row | RowError | EmptyRow]:
    width = len(header.names)
    pi, ci = header.prompt_index, header.completion_index
    number = 0
    for fields in records:
        number += 1
        if type(fields) is list:
            if len(fields) == width:
                prompt = fields[pi]
                completion = fields[ci]
                # Fast path: ASCII, no NUL, within the limit, not blank.
                if (
                    prompt.isascii()
                    and completion.isascii()
                    and len(prompt) <= max_field_bytes
                    and len(completion) <= max_field_bytes
                    and "\x00" not in prompt
                    and "\x00" not in completion
                    and prompt
                    and completion
                    and not prompt.isspace()
                    and not completion.isspace()
                ):
                    yield Row(number, prompt, completion)
                    continue
            yield _check(number, fields, header, max_field_bytes)
        elif fields is _TOO_LONG:
            message = (
                f"the row is longer than {backstop:,} characters: a quote is probably never closed, "
                "or a field is far over the size limit"
            )
            yield RowError(number, (ErrorDetail(row=number, column=None, message=message),))
        else:
            bad: _Bad = fields  # type: ignore[assignment]
            yield RowError(number, (_quoting_error(number, bad.message, bad.text, header),))


def _check(number: int, fields: list[str], header: Header, max_field_bytes: int) -> Row | RowError | EmptyRow:
    """The slow path: every problem of one row, with its column."""
    if not any(f.strip() for f in fields):
        return EmptyRow(number)
    width = len(header.names)
    errors: list[ErrorDetail] = []
    if len(fields) < width:
        missing = [header.column(i) for i in range(len(fields), width)]
        errors.append(
            ErrorDetail(
                row=number,
                column=missing[0],
                message=(
                    f"missing column {', '.join(repr(m) for m in missing)}: the row has {len(fields)} "
                    f"field{'s' if len(fields) != 1 else ''}, the header {width}"
                ),
            )
        )
    elif len(fields) > width:
        errors.append(
            ErrorDetail(
                row=number,
                column=f"column {width + 1}",
                message=(
                    f"extra field: the row has {len(fields)} fields, the header {width} "
                    '(quote a field that contains a comma: "a, b")'
                ),
            )
        )
    for index, name in ((header.prompt_index, "prompt"), (header.completion_index, "completion")):
        if index >= len(fields):
            continue
        value = fields[index]
        problem = _field_problem(value, max_field_bytes)
        if problem is None and not value.strip():
            problem = f"empty {name}"
        if problem is not None:
            errors.append(ErrorDetail(row=number, column=name, message=problem))
    if errors:
        return RowError(number, tuple(errors))
    return Row(number, fields[header.prompt_index], fields[header.completion_index])


def _field_problem(value: str, max_field_bytes: int) -> str | None:
    if value.isascii():
        size = len(value)
    else:
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError as error:
            # surrogateescape turned each invalid byte into U+DC80..U+DCFF: give the byte back.
            bad = value[error.start]
            shown = f"0x{ord(bad) - 0xDC00:02X}" if 0xDC80 <= ord(bad) <= 0xDCFF else repr(bad)
            return f"invalid UTF-8 (byte {shown} at character {error.start + 1}); save the file as UTF-8"
    if "\x00" in value:
        return f"contains a NUL byte (at character {value.index(chr(0)) + 1})"
    if size > max_field_bytes:
        return f"the field is {size:,} bytes; the limit is {max_field_bytes:,}"
    return None


def _quoting_error(number: int, csv_message: str, record: str, header: Header) -> ErrorDetail:
    """Turn a csv module error into a row error that names the column and says what to fix."""
    index, unclosed = _locate_quote_problem(record)
    column = header.column(index) if index is not None else None
    if unclosed or "unexpected end of data" in csv_message:
        message = 'a quoted field is never closed: the file ends inside it (write a quote in a field as "")'
    elif "expected after" in csv_message:
        message = 'unexpected text after a closing quote (write a quote inside a quoted field as "")'
    else:
        message = f"the row cannot be read as CSV ({csv_message})"
    return ErrorDetail(row=number, column=column, message=message)


def _locate_quote_problem(text: str) -> tuple[int | None, bool]:
    """(0-based field index of the first quoting problem, whether it is an unclosed quote)."""
    field = 0
    i, n = 0, len(text)
    at_start = True
    while i < n:
        ch = text[i]
        if at_start and ch == '"':
            i += 1
            while True:
                close = text.find('"', i)
                if close < 0:
                    return field, True
                if close + 1 < n and text[close + 1] == '"':
                    i = close + 2
                    continue
                i = close + 1
                break
            if i < n and text[i] not in ",\r\n":
                return field, False
            at_start = False
            continue
        if ch == ",":
            field += 1
            at_start = True
        elif ch in "\r\n":
            field, at_start = 0, True
        else:
            at_start = False
        i += 1
    return None, False
