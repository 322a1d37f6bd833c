"""Benchmark: cold import time of every Lambda entry module against a bare Powertools REST handler.

Each import runs in a fresh interpreter (a cold start's import phase), in an environment shaped
like Lambda's: the function's variables (settings, Powertools), `AWS_LAMBDA_TASK_ROOT` set (so the
Tracer patches botocore as it does on Lambda), no credentials, no instance metadata. The child
times only the import (`time.process_time` and `time.perf_counter` around `import_module`), not
the interpreter's own start.

The baseline, `baseline_powertools_handler.py`, is the smallest handler of its kind (REST resolver
with validation, Logger, Tracer, one pydantic-validated route, boto3). It runs in every round,
interleaved at random with the entry modules, so the machine's load falls on both alike.

The ratio and PASS/FAIL (goal: at most `--limit`, 1.5x) use CPU time, each side's fastest run:
on a shared machine wall time mostly measures waiting for a core and the load only ever adds
time, while on Lambda an import is CPU-bound and a function's share of a core scales both sides
alike. Medians (CPU and wall) and their ratios are printed too.

Bytecode: `--bytecode compiled` (default) gives both sides cached .pyc files (written by a
warm-up run under benchmarks/.data/pycache), as a bundle shipped with bytecode has;
`--bytecode source` compiles every module from source on each import, as happens on Lambda
when the bundle has no .pyc files (its file system is read-only, so nothing gets cached).

Then, for the slowest module, `-X importtime` shows what it imports beyond the baseline.
Run: `python benchmarks/bench_lambda_imports.py [--repeat 5] [--module api] [--bytecode source]`.
Exits 1 when a module is over the limit.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BASELINE = "baseline_powertools_handler"

# A deployed function's environment (infra/stack.py sets these on every function), with values
# of the right shape: nothing is read at import, but a module that did read them would succeed.
LAMBDA_ENVIRONMENT = {
    "AWS_REGION": "eu-west-1",
    "AWS_DEFAULT_REGION": "eu-west-1",
    "AWS_LAMBDA_FUNCTION_NAME": "tunelab-bench",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
    "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
    "AWS_LAMBDA_TASK_ROOT": str(ROOT),
    "AWS_EXECUTION_ENV": "AWS_Lambda_python3.14",
    "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR",
    "AWS_EC2_METADATA_DISABLED": "true",
    "RUNTIME": "aws",
    "TABLE_NAME": "tunelab-records",
    "IDEMPOTENCY_TABLE_NAME": "tunelab-idempotency",
    "DATASETS_BUCKET": "tunelab-datasets",
    "ARTIFACTS_BUCKET": "tunelab-artifacts",
    "FINE_TUNING_STATE_MACHINE_ARN": "arn:aws:states:eu-west-1:123456789012:stateMachine:tunelab-fine-tuning",
    "DEPLOYMENT_STATE_MACHINE_ARN": "arn:aws:states:eu-west-1:123456789012:stateMachine:tunelab-deployment",
    "EVENT_BUS_NAME": "tunelab",
    "SENDER_EMAIL": "noreply@example.com",
    "SCHEDULE_GROUP": "tunelab",
    "SCHEDULER_ROLE_ARN": "arn:aws:iam::123456789012:role/tunelab-scheduler",
    "SCHEDULES_DLQ_ARN": "arn:aws:sqs:eu-west-1:123456789012:tunelab-schedules-dlq",
    "AUTO_UNDEPLOY_TARGET_ARN": "arn:aws:lambda:eu-west-1:123456789012:function:tunelab-auto-undeploy",
    "BEDROCK_ROLE_ARN": "arn:aws:iam::123456789012:role/tunelab-bedrock",
    "PLATFORM_ACCOUNT_ID": "123456789012",
    "LOG_LEVEL": "INFO",
    "POWERTOOLS_SERVICE_NAME": "tunelab",
    "POWERTOOLS_METRICS_NAMESPACE": "tunelab",
    "POWERTOOLS_LOG_LEVEL": "INFO",
}
# Kept from this machine's environment: what the interpreter itself needs.
_KEPT = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")

# Times the import alone, in the child, and reports it as one JSON line.
_CHILD = """
import importlib, json, sys, time
sys.path[:0] = [{root!r}, {shared!r}, {here!r}]
wall, cpu = time.perf_counter(), time.process_time()
importlib.import_module({module!r})
cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
print(json.dumps({{"cpu_ms": cpu * 1000, "wall_ms": wall * 1000, "modules": len(sys.modules)}}))
"""


def lambda_environment() -> dict[str, str]:
    """The children's environment: Lambda's variables, no credentials, no profile, no config files."""
    env = {key: os.environ[key] for key in _KEPT if key in os.environ}
    env.update(LAMBDA_ENVIRONMENT)
    env["HF_HUB_OFFLINE"] = "1"
    return env


def entry_modules() -> list[str]:
    """Every Lambda entry module, as the stack (of this checkout) defines them."""
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT / 'shared')!r})\n"
        "from tunelab.composition.stack_definitions import FUNCTIONS\n"
        "print(' '.join(spec.module for spec in FUNCTIONS))"
    )
    listed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [f"functions.{name}" for name in listed.stdout.split()]


@dataclass
class Samples:
    cpu_ms: list[float] = field(default_factory=list)
    wall_ms: list[float] = field(default_factory=list)
    modules: int = 0

    @property
    def cpu(self) -> float:
        return statistics.median(self.cpu_ms)

    @property
    def cpu_min(self) -> float:
        return min(self.cpu_ms)

    @property
    def wall(self) -> float:
        return statistics.median(self.wall_ms)


class Runner:
    def __init__(self, bytecode: str, pycache: Path) -> None:
        self.env = lambda_environment()
        self.flags = ["-X", f"pycache_prefix={pycache}"]
        if bytecode == "source":
            # An empty cache that is never written: every module is compiled on every import.
            self.env["PYTHONDONTWRITEBYTECODE"] = "1"

    def command(self, module: str, *extra: str) -> list[str]:
        code = _CHILD.format(root=str(ROOT), shared=str(ROOT / "shared"), here=str(HERE), module=module)
        return [sys.executable, *self.flags, *extra, "-c", code]

    def measure(self, module: str) -> dict[str, float]:
        result = subprocess.run(
            self.command(module), cwd=ROOT, env=self.env, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise SystemExit(f"importing {module} failed:\n{result.stderr[-3000:]}")
        measured: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
        return measured

    def import_times(self, module: str) -> list[tuple[str, int, int]]:
        """`-X importtime` of a fresh import, in its order (children first): (module, self us, depth)."""
        result = subprocess.run(
            self.command(module, "-X", "importtime"),
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        rows = []
        for line in result.stderr.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            own, _, name = line.split(":", 1)[1].split("|")
            depth = (len(name) - len(name.lstrip()) - 1) // 2
            rows.append((name.strip(), int(own), depth))
        return rows


def _group(name: str) -> str:
    """tunelab modules by themselves, everything else by top-level package."""
    return name if name.startswith(("tunelab", "functions")) else name.split(".", maxsplit=1)[0]


def contributors(runner: Runner, module: str, top: int) -> None:
    base = {name for name, _, _ in runner.import_times(BASELINE)}
    rows = runner.import_times(module)
    extra = [(name, own, depth) for name, own, depth in rows if name not in base]
    print(
        f"\nTop import-time contributors of {module} (-X importtime, wall, one run): "
        f"{len(extra)} modules beyond the baseline's {len(base)}, "
        f"{sum(own for _, own, _ in extra) / 1000:.0f} ms of their own"
    )
    groups: Counter[str] = Counter()
    for name, own, _ in extra:
        groups[_group(name)] += own
    print(f"  {'self ms':>8}  module or package (not imported by the baseline)")
    for name, own in groups.most_common(top):
        print(f"  {own / 1000:8.1f}  {name}")
    # A subtree's cost beyond the baseline: its own modules' time, leaving out what the baseline
    # imports too (boto3 under the first module that happens to import it, say). The output lists
    # children before their parent, with the depth as indentation.
    subtrees: list[tuple[int, str]] = []
    pending: list[tuple[int, int]] = []  # (depth, beyond-baseline time) of subtrees not yet adopted
    for name, own, depth in rows:
        children = 0
        while pending and pending[-1][0] > depth:
            children += pending.pop()[1]
        total = children + (0 if name in base else own)
        pending.append((depth, total))
        if name not in base:
            subtrees.append((total, name))
    print(f"  {'cum ms':>8}  largest subtrees beyond the baseline")
    for total, name in sorted(subtrees, reverse=True)[:top]:
        print(f"  {total / 1000:8.1f}  {name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=5, help="imports of each module (fastest, median)")
    parser.add_argument("--module", action="append", help="only these entry modules (e.g. api)")
    parser.add_argument("--bytecode", choices=("compiled", "source"), default="compiled")
    parser.add_argument("--limit", type=float, default=1.5, help="largest ratio to the baseline that passes")
    parser.add_argument("--top", type=int, default=15, help="contributors listed for the slowest module")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    modules = entry_modules()
    if args.module:
        wanted = {f"functions.{name.removeprefix('functions.')}" for name in args.module}
        modules = [module for module in modules if module in wanted]
    rng = random.Random(args.seed)
    samples = {name: Samples() for name in (BASELINE, *modules)}

    with tempfile.TemporaryDirectory() as empty:
        pycache = HERE / ".data" / "pycache" if args.bytecode == "compiled" else Path(empty)
        runner = Runner(args.bytecode, pycache)
        for name in samples:  # warm-up, not counted: the page cache and (compiled) the .pyc files
            runner.measure(name)
        for round_ in range(args.repeat):
            order = list(samples)
            rng.shuffle(order)
            for name in order:
                measured = runner.measure(name)
                samples[name].cpu_ms.append(measured["cpu_ms"])
                samples[name].wall_ms.append(measured["wall_ms"])
                samples[name].modules = int(measured["modules"])
            print(f"round {round_ + 1}/{args.repeat} done", file=sys.stderr)

        base = samples[BASELINE]
        print(
            f"\nCold import, {args.repeat} fresh interpreters each, bytecode {args.bytecode}. CPU and wall "
            f"ms (median, and the CPU minimum); ratio = CPU minimum / the baseline's (limit {args.limit}x)"
        )
        header = (
            f"{'module':<28} {'cpu med':>8} {'cpu min':>8} {'wall med':>9} {'modules':>8} {'ratio':>6}  "
            "result  (ratio of medians: cpu, wall)"
        )
        print(header)
        print("-" * len(header))
        failed = []
        for name in (BASELINE, *modules):
            sample = samples[name]
            ratio = sample.cpu_min / base.cpu_min
            verdict = "PASS" if ratio <= args.limit else "FAIL"
            if name == BASELINE:
                verdict = "base"
            elif verdict == "FAIL":
                failed.append(name)
            print(
                f"{name:<28} {sample.cpu:8.0f} {sample.cpu_min:8.0f} {sample.wall:9.0f} {sample.modules:8d} "
                f"{ratio:6.2f}  {verdict:<6}  ({sample.cpu / base.cpu:.2f}, {sample.wall / base.wall:.2f})"
            )
        slowest = max(modules, key=lambda name: samples[name].cpu_min)
        contributors(runner, slowest, args.top)

    print(f"\n{len(modules) - len(failed)}/{len(modules)} modules within {args.limit}x of the baseline")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
