"""Dataset CSV reading, validation, model checks, the split and the JSONL writers."""

from __future__ import annotations

import io
import json
import tracemalloc
from pathlib import Path
from unittest.mock import patch

import pytest

from tests.unit.model_specs import model_spec
from tunelab.domain.catalog import DataLimits
from tunelab.domain.datasets import (
    DatasetLimits,
    EmptyRow,
    ReadStats,
    Row,
    RowError,
    SplitPlan,
    assign,
    check_for_model,
    convert_split,
    convert_to_jsonl,
    model_warnings,
    read_rows,
    reader,
    split,
    validate_dataset,
    write_jsonl,
)
from tunelab.domain.errors import ValidationFailed

ROOT = Path(__file__).resolve().parents[2]


def _sample_dir() -> Path:
    for candidate in (
        ROOT / "shared" / "tunelab" / "sample_data",
        ROOT.parent / "shared" / "data",
        Path("/work/shared/data"),
    ):
        if (candidate / "support-triage.csv").exists():
            return candidate
    pytest.fail("the sample datasets are missing (shared/tunelab/sample_data)")


@pytest.fixture(scope="module")
def samples() -> Path:
    return _sample_dir()


def rows_of(data: bytes | str, **kwargs) -> list[Row | RowError | EmptyRow]:
    if isinstance(data, str):
        data = data.encode()
    return list(read_rows(io.BytesIO(data), **kwargs))


def only_rows(data: bytes | str) -> list[tuple[str, str]]:
    items = rows_of(data)
    assert all(isinstance(i, Row) for i in items), items
    return [(i.prompt, i.completion) for i in items if isinstance(i, Row)]


def errors_of(data: bytes | str, **kwargs) -> list[tuple[int | None, str | None, str]]:
    return [
        (d.row, d.column, d.message)
        for i in rows_of(data, **kwargs)
        if isinstance(i, RowError)
        for d in i.errors
    ]


# --- the sample files --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "rows"), [("support-triage.csv", 200), ("support-triage-validation.csv", 40)]
)
def test_sample_datasets_are_ready(samples: Path, name: str, rows: int) -> None:
    path = samples / name
    with path.open("rb") as f:
        report = validate_dataset(f)
    assert report.ready
    assert report.rows == rows
    assert report.errors == []
    assert report.error_count == 0
    assert report.size_bytes == path.stat().st_size
    assert report.stats.duplicate_rows == 0
    # ~36 characters of prompt per 9 of completion: the estimates follow the text's length.
    assert report.stats.prompt_tokens > 3 * report.stats.completion_tokens > 0
    assert 0 < report.stats.max_row_tokens < 100
    assert report.columns == ["prompt", "expected completion"]


# --- header ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        "prompt,completion",
        "Prompt,Completion",
        "  PROMPT , Expected Completion ",
        "prompt,expected_completion",
        "completion,prompt",
        "expected completion,prompt",
    ],
)
def test_header_variants_are_accepted(header: str) -> None:
    first, second = ("p", "c") if header.strip().lower().startswith("p") else ("c", "p")
    assert only_rows(f"{header}\n{first},{second}\n") == [("p", "c")]


def test_extra_named_columns_are_ignored_with_a_warning() -> None:
    report = validate_dataset(io.BytesIO(b"id,completion,prompt\n7,c,p\n"))
    assert report.ready
    assert report.rows == 1
    assert [w.message for w in report.warnings] == ["column 'id' is ignored"]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\n\n",
        b"question,answer\nq,a\n",
        b"prompt\np\n",
        b"prompt,prompt,completion\n",
        b'"prompt,completion\n',
    ],
)
def test_a_file_without_the_header_fails_as_a_whole(data: bytes) -> None:
    with pytest.raises(ValidationFailed) as failure:
        rows_of(data)
    assert failure.value.details[0].field == "header"
    report = validate_dataset(io.BytesIO(data))
    assert not report.ready
    assert report.error_count == 1
    assert report.errors[0].field == "header"


# --- encoding and line endings -----------------------------------------------------------------


def test_bom_crlf_and_quoted_newlines() -> None:
    data = '\ufeffprompt,completion\r\n"line 1\r\nline 2","a, b"\r\n"say ""hi""",ok\r\nlast,row'
    assert only_rows(data.encode("utf-8")) == [
        ("line 1\r\nline 2", "a, b"),
        ('say "hi"', "ok"),
        ("last", "row"),
    ]


def test_cr_only_line_endings() -> None:
    assert only_rows('prompt,completion\rp1,c1\r"x\ry",c2\r') == [("p1", "c1"), ("x\ry", "c2")]


def test_non_ascii_text_is_kept() -> None:
    assert only_rows("prompt,completion\nCafé ☕,日本語 🎉\n") == [("Café ☕", "日本語 🎉")]


def test_row_numbers_count_records_not_lines() -> None:
    items = rows_of('prompt,completion\n"a\n\n\nb",c\n,\nd,\n')
    assert isinstance(items[0], Row)
    assert items[0].row == 1
    assert items[1] == EmptyRow(2)  # a row of blank fields is skipped, keeping its number
    assert isinstance(items[2], RowError)
    assert items[2].row == 3


# --- per-row errors, each with its row and column ----------------------------------------------


def test_missing_column() -> None:
    assert errors_of("prompt,completion\np,c\nonly\n") == [
        (2, "completion", "missing column 'completion': the row has 1 field, the header 2")
    ]


def test_extra_field() -> None:
    [(row, column, message)] = errors_of("prompt,completion\np,c,d\n")
    assert (row, column) == (1, "column 3")
    assert message.startswith("extra field: the row has 3 fields")


@pytest.mark.parametrize(
    ("line", "column", "message"),
    [
        (" ,c", "prompt", "empty prompt"),
        ('p,""', "completion", "empty completion"),
        ('p,"\n"', "completion", "empty completion"),
    ],
)
def test_empty_prompt_or_completion(line: str, column: str, message: str) -> None:
    errors = errors_of(f"prompt,completion\nok,ok\n{line}\n")
    assert errors[0] == (2, column, message)


def test_invalid_utf8_names_row_column_and_byte() -> None:
    assert errors_of(b"prompt,completion\nok,ok\np,caf\xe9\n") == [
        (2, "completion", "invalid UTF-8 (byte 0xE9 at character 4); save the file as UTF-8")
    ]


def test_invalid_utf8_costs_one_row_not_the_file() -> None:
    items = rows_of(b"prompt,completion\n\xff\xfe,c\np,c\n")
    assert isinstance(items[0], RowError)
    assert items[0].errors[0].column == "prompt"
    assert items[1] == Row(2, "p", "c")


def test_nul_byte() -> None:
    assert errors_of(b"prompt,completion\nab\x00c,d\n") == [
        (1, "prompt", "contains a NUL byte (at character 3)")
    ]


def test_field_over_the_size_limit_counts_bytes() -> None:
    ok = "é" * 50  # 100 bytes
    too_long = "é" * 51
    errors = errors_of(f"prompt,completion\n{ok},c\np,{too_long}\n", max_field_bytes=100)
    assert errors == [(2, "completion", "the field is 102 bytes; the limit is 100")]


def test_unclosed_quote_at_the_end_of_the_file() -> None:
    assert errors_of('prompt,completion\np,c\nq,"never closed\nmore text\n') == [
        (
            2,
            "completion",
            'a quoted field is never closed: the file ends inside it (write a quote in a field as "")',
        )
    ]


def test_text_after_a_closing_quote() -> None:
    items = rows_of('prompt,completion\n"a"b,c\nnext,row\n')
    assert isinstance(items[0], RowError)
    assert (items[0].errors[0].row, items[0].errors[0].column) == (1, "prompt")
    assert "after a closing quote" in items[0].errors[0].message
    assert items[1] == Row(2, "next", "row")


def test_unclosed_quote_in_a_large_file_is_cut_off_in_bounded_memory() -> None:
    # The quote swallows the rest of the file: past the backstop it is reported, not accumulated.
    body = b"prompt,completion\nok,ok\n" + b'p,"open\n' + b"x" * 5000 + b"\n" + b"y,z\n" * 2000
    items = rows_of(body, max_field_bytes=100)
    assert isinstance(items[1], RowError)
    assert items[1].row == 2
    assert "longer than" in items[1].errors[0].message


def test_each_error_is_counted_and_100_are_listed() -> None:
    data = "prompt,completion\n" + "p,\n" * 250 + "p,c\n"
    report = validate_dataset(io.BytesIO(data.encode()))
    assert report.error_count == 250
    assert len(report.errors) == 100
    assert report.errors[0].row == 1
    assert report.errors[99].row == 100
    assert report.rows == 1
    assert not report.ready
    with pytest.raises(ValidationFailed) as failure:
        report.raise_for_errors()
    assert "250 errors" in failure.value.message


# --- stats -------------------------------------------------------------------------------------


def test_stats_tokens_duplicates_and_empty_rows() -> None:
    data = "prompt,completion\n" + "aaaa aaaa,bbbb\n" + "\n" + "aaaa aaaa,bbbb\n" + f"{'x' * 400},y\n"
    report = validate_dataset(io.BytesIO(data.encode()))
    assert report.rows == 3
    assert report.stats.prompt_tokens == 3 + 3 + 100
    assert report.stats.completion_tokens == 1 + 1 + 1
    assert report.stats.max_row_tokens == 101
    assert report.stats.duplicate_rows == 1
    assert report.stats.empty_rows_skipped == 1
    assert report.longest_rows[0].row == 4
    assert report.longest_rows[0].tokens == 101
    messages = [w.message for w in report.warnings]
    assert any("1 row is the same as an earlier row" in m for m in messages)
    assert "1 empty row skipped" in messages


def test_duplicates_count_across_many_rows() -> None:
    # Enough rows to grow the hash table several times.
    lines = [f"prompt {i % 50_000},c" for i in range(120_000)]
    report = validate_dataset(io.BytesIO(("prompt,completion\n" + "\n".join(lines)).encode()))
    assert report.rows == 120_000
    assert report.stats.duplicate_rows == 70_000


def test_long_rows_are_warned_about() -> None:
    data = f"prompt,completion\n{'w' * 40_000},c\nshort,c\n"
    report = validate_dataset(io.BytesIO(data.encode()), limits=DatasetLimits(warn_row_tokens=8192))
    assert report.ready
    [warning] = report.warnings
    assert warning.row == 1
    assert warning.message.startswith("row is about 10,001 tokens")


def test_header_only_file_is_not_ready() -> None:
    report = validate_dataset(io.BytesIO(b"prompt,completion\n"))
    assert not report.ready
    assert report.errors[0].message == "the file has a header but no data rows"


# --- model-aware checks ------------------------------------------------------------------------


def _limited_spec(min_records: int = 8, max_records: int = 100, max_record_tokens: int = 100):
    spec = model_spec("bedrock", name="Tiny")
    limits = DataLimits(
        min_records=min_records,
        max_records=max_records,
        max_record_tokens=max_record_tokens,
        max_validation_records=5,
        source=spec.limits.source,
    )
    return spec.model_copy(update={"limits": limits})


def _report_with_lengths(*prompt_chars: int):
    data = "prompt,completion\n" + "".join(f"{'a' * n},c\n" for n in prompt_chars)
    return validate_dataset(io.BytesIO(data.encode()))


def test_check_for_model_record_counts() -> None:
    spec = _limited_spec(min_records=8, max_records=100)
    report = _report_with_lengths(*[10] * 10)
    assert check_for_model(report, spec, training_rows=10) == []
    [few] = check_for_model(report, spec, training_rows=7)
    assert few.field == "dataset_id"
    assert few.message == "Tiny needs at least 8 training rows; this dataset gives 7"
    [many] = check_for_model(report, spec, training_rows=101)
    assert "at most 100 training rows" in many.message
    [validation] = check_for_model(report, spec, training_rows=10, validation_rows=6)
    assert validation.field == "validation"
    assert "at most 5 validation rows" in validation.message


def test_check_for_model_rows_longer_than_the_limit() -> None:
    spec = _limited_spec(max_record_tokens=100)  # context 8192, so the record limit rules
    # Tokens: row 1 = 50 + 1, row 2 = 150 + 1 (low end 113 > 100), row 3 = 120 + 1 (low end 90).
    report = _report_with_lengths(200, 600, 480)
    errors = check_for_model(report, spec, training_rows=8)
    assert [(e.row, e.message) for e in errors] == [
        (2, "row is about 151 tokens; Tiny takes at most 100 tokens per row (prompt and completion)")
    ]
    assert [w.row for w in model_warnings(report, spec)] == [3]


def test_check_for_model_uses_the_context_when_smaller() -> None:
    spec = _limited_spec(max_record_tokens=100_000).model_copy(update={"context_length": 100})
    report = _report_with_lengths(600)
    assert [e.row for e in check_for_model(report, spec, training_rows=8)] == [1]


# --- split -------------------------------------------------------------------------------------


def test_split_is_deterministic_and_near_the_percent() -> None:
    rows = list(range(10_000))
    train, validation = split(rows, 10)
    assert (train, validation) == split(rows, 10)
    assert sorted(train + validation) == rows
    assert 900 <= len(validation) <= 1100
    assert split(rows, 10, key="other key") != (train, validation)


def test_split_plan_matches_split_and_counts() -> None:
    plan = SplitPlan(1000, 20)
    _train, validation = split(list(range(1, 1001)), 20)
    assert [i for i in range(1, 1001) if plan.is_validation(i)] == validation
    assert plan.validation_rows() == len(validation)
    sides = list(assign(["a", "b", "c"], SplitPlan(3, 50)))
    assert [row for _, row in sides] == ["a", "b", "c"]


@pytest.mark.parametrize("rows", range(2, 30))
@pytest.mark.parametrize("percent", [1, 50])
def test_split_sides_are_never_empty(rows: int, percent: int) -> None:
    train, validation = split(list(range(rows)), percent)
    assert train
    assert validation
    assert len(train) + len(validation) == rows


@pytest.mark.parametrize("percent", [0, 51, 100, -5, True, 10.5])
def test_split_percent_bounds(percent) -> None:
    with pytest.raises(ValidationFailed) as failure:
        SplitPlan(100, percent)
    assert failure.value.details[0].field == "validation.percent"


def test_split_needs_two_rows() -> None:
    with pytest.raises(ValidationFailed, match="at least 2 data rows"):
        split(["only"], 10)


# --- writers -----------------------------------------------------------------------------------

ROWS = [Row(1, 'Say "hi"\nplease', "hi\\there\t"), Row(2, "Café ☕", "日本語")]


def _written(fmt, rows=ROWS, **kwargs) -> bytes:
    out = io.BytesIO()
    assert write_jsonl(rows, out, fmt, **kwargs) == len(rows)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["prompt_completion", "trainer_jsonl"])
def test_prompt_completion_writer_exact_bytes(fmt) -> None:
    assert _written(fmt) == (
        b'{"prompt": "Say \\"hi\\"\\nplease", "completion": "hi\\\\there\\t"}\n'
        + '{"prompt": "Café ☕", "completion": "日本語"}\n'.encode()
    )


def test_conversation_writer_follows_the_bedrock_conversation_schema() -> None:
    lines = [json.loads(line) for line in _written("bedrock_conversation").splitlines()]
    assert lines[0] == {
        "schemaVersion": "bedrock-conversation-2024",
        "messages": [
            {"role": "user", "content": [{"text": 'Say "hi"\nplease'}]},
            {"role": "assistant", "content": [{"text": "hi\\there\t"}]},
        ],
    }
    with_system = json.loads(_written("bedrock_conversation", system="You triage tickets.").splitlines()[1])
    assert list(with_system) == ["schemaVersion", "system", "messages"]
    assert with_system["system"] == [{"text": "You triage tickets."}]
    assert with_system["messages"][1] == {"role": "assistant", "content": [{"text": "日本語"}]}


def test_writer_output_equals_json_dumps_for_awkward_text() -> None:
    awkward = [
        Row(i, p, c) for i, (p, c) in enumerate([("\x01\x02", "\x7f"), ("\u2028", "\x00x"), ("a", "\ud800")])
    ]
    for batch in ([r] for r in awkward):
        expected = "".join(
            json.dumps({"prompt": r.prompt, "completion": r.completion}, ensure_ascii=False) + "\n"
            for r in batch
        )
        got = _written("trainer_jsonl", batch)
        if "\ud800" in batch[0].completion:
            assert json.loads(got) == {"prompt": "a", "completion": "\ud800"}
        else:
            assert got == expected.encode()


def test_writer_rejects_a_system_prompt_where_the_format_has_none() -> None:
    with pytest.raises(ValidationFailed):
        write_jsonl(ROWS, io.BytesIO(), "trainer_jsonl", system="no")


# --- conversion --------------------------------------------------------------------------------


def test_convert_to_jsonl_writes_valid_rows_and_reports(samples: Path) -> None:
    out = io.BytesIO()
    with (samples / "support-triage.csv").open("rb") as f:
        report = convert_to_jsonl(f, out, "trainer_jsonl")
    lines = out.getvalue().decode().splitlines()
    assert report.ready
    assert len(lines) == report.rows == 200
    first = json.loads(lines[0])
    assert set(first) == {"prompt", "completion"}
    assert first["prompt"].startswith("Triage this support ticket.")


def test_convert_split_is_stable(samples: Path) -> None:
    results = []
    for _ in range(2):
        train, validation = io.BytesIO(), io.BytesIO()
        with (samples / "support-triage.csv").open("rb") as f:
            report, n_train, n_validation = convert_split(
                f, train, validation, "bedrock_conversation", SplitPlan(200, 10)
            )
        assert report.ready
        assert n_train + n_validation == 200
        assert n_validation == SplitPlan(200, 10).validation_rows()
        assert len(validation.getvalue().splitlines()) == n_validation
        results.append((train.getvalue(), validation.getvalue()))
    assert results[0] == results[1]


def test_read_stats_reports_size_and_header() -> None:
    stats = ReadStats()
    data = b"\xef\xbb\xbfcompletion,prompt\nc,p\n"
    assert list(read_rows(io.BytesIO(data), stats=stats)) == [Row(1, "p", "c")]
    assert stats.size_bytes == len(data)
    assert stats.header is not None
    assert stats.header.names == ("completion", "prompt")


def test_reads_any_object_with_read() -> None:
    class Body:  # what an S3 StreamingBody offers
        def __init__(self, data: bytes) -> None:
            self._io = io.BytesIO(data)

        def read(self, n: int = -1) -> bytes:
            return self._io.read(min(n, 7) if n > 0 else n)  # short reads, like a socket

    report = validate_dataset(Body(b"prompt,completion\n" + b'"a\nb",c\n' * 100))  # type: ignore[arg-type]
    assert report.ready
    assert report.rows == 100


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 8, 13])
def test_chunk_boundaries_do_not_change_rows(chunk: int) -> None:
    # The fast path works chunk by chunk; a CRLF, a quote or a field cut by a chunk's end must
    # read the same as with one big chunk.
    data = b'prompt,completion\r\n"a\r\nb","say ""x"""\r\nplain,row\r\n\r\n"q",w\r\n'
    with patch.object(reader, "_READ_CHUNK", chunk):
        small = rows_of(data)
    assert small == rows_of(data)
    assert small == [Row(1, "a\r\nb", 'say "x"'), Row(2, "plain", "row"), EmptyRow(3), Row(4, "q", "w")]


class _LazyCsv(io.RawIOBase):
    """A dataset CSV of `rows` long rows, made as it is read (the test itself holds none of it)."""

    def __init__(self, rows: int, row_bytes: int = 20_000) -> None:
        text = "x" * (row_bytes // 2)
        self._row = f'"{text}\nline two","{text}"\r\n'.encode()
        self._header = b"prompt,completion\r\n"
        self._left = rows
        self._pending = memoryview(self._header)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if not self._pending:
            if not self._left:
                return 0
            self._left -= 1
            self._pending = memoryview(self._row)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def test_memory_stays_flat_whatever_the_file_size() -> None:
    class Discard:
        written = 0

        def write(self, data: bytes) -> int:
            self.written += len(data)
            return len(data)

    peaks = []
    for rows in (200, 2000):  # 4 MB, then 40 MB
        out = Discard()
        tracemalloc.start()
        try:
            report = convert_to_jsonl(io.BufferedReader(_LazyCsv(rows)), out, "trainer_jsonl")  # type: ignore[arg-type]
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert report.rows == rows
        assert report.stats.duplicate_rows == rows - 1
        assert out.written > report.size_bytes > rows * 20_000
    # Ten times the data, about the same peak: a few chunks' worth, not the file.
    assert peaks[1] < 12_000_000
    assert peaks[1] < 1.5 * peaks[0]
