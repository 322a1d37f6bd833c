"""Benchmark: dataset CSV -> trainer JSONL with stats, tunelab's streaming reader against pandas.

Generates a CSV of `--size-mb` (default 1024) under benchmarks/.data (gitignored), then converts it
twice, each in its own subprocess so peak RSS is the converter's own:

- tunelab: `convert_to_jsonl(..., "trainer_jsonl")` (validation, token stats, duplicates, JSONL);
- pandas: `read_csv(dtype=str)` + `to_json(orient="records", lines=True)` (conversion only).

Prints each one's throughput (wall and CPU time) and peak RSS and the ratios, and exits 1 unless
tunelab's peak RSS is under 200 MB and its throughput at least pandas' (by CPU time, which a
shared machine's load does not skew; `--repeat N` keeps each side's best of N runs for wall time).
Run: `python benchmarks/bench_csv_to_jsonl.py [--size-mb 100] [--repeat 3] [--keep]`.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RSS_LIMIT_MB = 200

_WORDS = [
    "the",
    "account",
    "login",
    "page",
    "report",
    "export",
    "invoice",
    "billing",
    "team",
    "project",
    "dashboard",
    "search",
    "error",
    "password",
    "email",
    "upload",
    "file",
    "slow",
    "timeout",
    "please",
    "urgent",
    "today",
    "weekly",
    "monthly",
    "customer",
    "refund",
    "order",
    "shipping",
    "address",
    "settings",
    "permission",
    "admin",
    "user",
    "access",
    "token",
    "api",
    "integration",
    "webhook",
    "mobile",
    "app",
    "desktop",
    "browser",
    "crash",
    "sync",
    "notification",
    "calendar",
    "schedule",
    "meeting",
    "plan",
    "upgrade",
]
_CATEGORIES = ("bug", "login", "billing", "feature", "account", "performance")
_PRIORITIES = ("low", "medium", "high")


def generate(path: Path, size_mb: int, seed: int = 7) -> int:
    """Write a realistic dataset CSV of about `size_mb` MB; returns its row count.

    Ticket bodies come from a pool built once; each row gets its own ticket number, so rows are
    distinct, and one in seven holds quotes, a comma and a newline. Rows are written 20,000 at a
    time through `csv.writer.writerows`, so generating a gigabyte takes seconds, not minutes.
    """
    rng = random.Random(seed)
    sentences = [" ".join(rng.choices(_WORDS, k=rng.randint(6, 18))).capitalize() + "." for _ in range(4000)]
    bodies = [" ".join(rng.choices(sentences, k=rng.randint(2, 14))) for _ in range(20_000)]
    bodies += [b + ' Quote: "it says, error 42"\nSecond line.' for b in bodies[: len(bodies) // 6]]
    completions = [f"category={c}; priority={p}" for c in _CATEGORIES for p in _PRIORITIES]
    target = size_mb * 1_000_000
    written = rows = 0
    batch = 20_000
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write("prompt,completion\r\n")
        while written < target:
            buf = io.StringIO()
            csv.writer(buf).writerows(
                (f"Triage ticket #{n}. Reply with category and priority.\nTicket: {body}", completion)
                for n, body, completion in zip(
                    range(rows + 1, rows + batch + 1),
                    rng.choices(bodies, k=batch),
                    rng.choices(completions, k=batch),
                    strict=True,
                )
            )
            data = buf.getvalue()
            f.write(data)
            written += len(data)
            rows += batch
    return rows


def _child_tunelab(src: str, dst: str) -> dict[str, object]:
    from tunelab.domain.datasets import convert_to_jsonl  # noqa: PLC0415 - the child alone imports it

    start, cpu = time.perf_counter(), time.process_time()
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        report = convert_to_jsonl(fin, fout, "trainer_jsonl")
    return {
        "seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu,
        "rows": report.rows,
        "errors": report.error_count,
        "prompt_tokens": report.stats.prompt_tokens,
        "completion_tokens": report.stats.completion_tokens,
        "duplicates": report.stats.duplicate_rows,
    }


def _child_pandas(src: str, dst: str) -> dict[str, object]:
    import pandas as pd  # noqa: PLC0415 - the child alone imports it

    start, cpu = time.perf_counter(), time.process_time()
    frame = pd.read_csv(src, dtype=str, keep_default_na=False)
    frame.to_json(dst, orient="records", lines=True)
    return {
        "seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu,
        "rows": len(frame),
    }


def _peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM is per address space, so it starts afresh at exec; ru_maxrss
    (KiB on Linux) would carry the parent's peak over from the fork."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _best(a: dict[str, object], b: dict[str, object]) -> dict[str, object]:
    best = dict(a)
    for key in ("seconds", "cpu_seconds", "peak_rss_mb"):
        best[key] = min(float(a[key]), float(b[key]))  # type: ignore[arg-type]
    return best


def _run_child(kind: str, src: Path, dst: Path) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(src), str(dst)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{kind} run failed:\n{proc.stderr}")
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--data-dir", type=Path, default=HERE / ".data")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each side; the best counts")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "SRC", "DST"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        kind, src, dst = args.child
        result = _child_tunelab(src, dst) if kind == "tunelab" else _child_pandas(src, dst)
        result["peak_rss_mb"] = _peak_rss_mb()
        print(json.dumps(result))
        return 0

    args.data_dir.mkdir(parents=True, exist_ok=True)
    src = args.data_dir / f"bench-{args.size_mb}mb.csv"
    if not src.exists():
        start = time.perf_counter()
        rows = generate(src, args.size_mb)
        print(f"generated {src.name}: {rows:,} rows in {time.perf_counter() - start:.1f} s")
    size_mb = src.stat().st_size / 1e6
    out_t, out_p = args.data_dir / "tunelab.jsonl", args.data_dir / "pandas.jsonl"
    try:
        ours, theirs = _run_child("tunelab", src, out_t), _run_child("pandas", src, out_p)
        for _ in range(args.repeat - 1):  # alternate, keep each side's best: load comes and goes
            ours = _best(ours, _run_child("tunelab", src, out_t))
            theirs = _best(theirs, _run_child("pandas", src, out_p))
        if ours["rows"] != theirs["rows"] or ours["errors"]:
            print(f"row counts differ or errors: tunelab {ours}, pandas {theirs}")
            return 1
        # The two outputs hold the same records (pandas escapes non-ASCII and '/', so compare parsed).
        with out_t.open(encoding="utf-8") as a, out_p.open(encoding="utf-8") as b:
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                if i % 997 == 0 and json.loads(x) != json.loads(y):
                    print(f"outputs differ at line {i + 1}")
                    return 1
    finally:
        if not args.keep:
            for p in (out_t, out_p, src):
                p.unlink(missing_ok=True)

    t_rate = size_mb / float(ours["seconds"])  # type: ignore[arg-type]
    p_rate = size_mb / float(theirs["seconds"])  # type: ignore[arg-type]
    ratio = t_rate / p_rate
    print(
        f"input: {size_mb:,.0f} MB, {ours['rows']:,} rows; tokens {ours['prompt_tokens']:,} + "
        f"{ours['completion_tokens']:,}, duplicates {ours['duplicates']}"
    )
    print(
        f"tunelab streaming: {ours['seconds']:.1f} s, {t_rate:.1f} MB/s, "
        f"peak RSS {ours['peak_rss_mb']:.0f} MB"
    )
    print(
        f"pandas read_csv+to_json: {theirs['seconds']:.1f} s, {p_rate:.1f} MB/s, "
        f"peak RSS {theirs['peak_rss_mb']:.0f} MB"
    )
    print(f"ratio (tunelab / pandas throughput): {ratio:.2f}")
    # On a shared machine wall time moves with the neighbours' load; CPU time much less so.
    cpu_ratio = float(theirs["cpu_seconds"]) / float(ours["cpu_seconds"])  # type: ignore[arg-type]
    print(
        f"CPU time: tunelab {ours['cpu_seconds']:.1f} s, pandas {theirs['cpu_seconds']:.1f} s; "
        f"ratio {cpu_ratio:.2f}"
    )
    # Both converters are single-threaded, so on a quiet machine the two ratios agree; on a shared
    # one only the CPU ratio is steady, and it is the one that decides.
    ok = float(ours["peak_rss_mb"]) < RSS_LIMIT_MB and cpu_ratio >= 1.0  # type: ignore[arg-type]
    print("PASS" if ok else f"FAIL (need peak RSS < {RSS_LIMIT_MB} MB and CPU-time ratio >= 1)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
