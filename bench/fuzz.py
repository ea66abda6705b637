"""Coverage-guided fuzzing of every decoder and parser (tests/fuzz_targets.py) under atheris.

Run:   .venv/bin/python bench/fuzz.py --seconds 30          (every target, 30 s each, ~12 min)
Quick: .venv/bin/python bench/fuzz.py --seconds 5 --targets promql,openmetrics --no-write

Each target runs in its own process: atheris (libFuzzer for Python) instruments opsmetrics and
PyYAML as they are imported, starts from the target's seeds (tests/fuzz_seeds.py) with the
token dictionary the hypothesis run uses, and mutates towards new coverage for `--seconds`.
The invariant is `tests.fuzz_targets.check`: an input decodes or raises a UserError. libFuzzer
stops a target at the first crash (any other exception), at an input that runs longer than
`--timeout` seconds (a hang), or past `--rss-mb` of memory; the input is copied to
bench/fuzz-findings/<target>/ to be fixed and then kept in tests/fuzz_regressions/<target>/.
Writes the `## Fuzzing` section of BENCHMARKS.md (other sections are left alone): executions,
executions/s, coverage, crashes in this run, and the findings fixed so far (the regression
files). `-seed=1` makes a run's mutations repeatable given the same code and seeds.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECTION = "## Fuzzing"
FINDINGS = ROOT / "bench" / "fuzz-findings"
REGRESSIONS = ROOT / "tests" / "fuzz_regressions"
#: libFuzzer's artifact names: crash (an exception), timeout (a hang), oom (memory).
ARTIFACT = re.compile(r"^(crash|timeout|oom|leak)-")


@dataclass(frozen=True)
class Result:
    target: str
    covers: str
    seconds: float
    executions: int
    rate: float
    coverage: int
    peak_rss_mb: int
    findings: list[Path]
    fixed: int


# --- the worker: one target under atheris --------------------------------------------------
def worker(name: str, corpus: Path, artifacts: Path, flags: list[str]) -> None:
    import atheris

    with atheris.instrument_imports(include=["opsmetrics", "yaml"]):
        from tests.fuzz_targets import TARGETS, FuzzEnv, check

    # Inside the driver's temporary directory, so that it goes when the run ends.
    target, env = TARGETS[name], FuzzEnv(corpus.parent / "env")

    def one_input(data: bytes) -> None:
        check(target, env, data)

    argv = [sys.argv[0], str(corpus), f"-artifact_prefix={artifacts}/", *flags]
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


# --- the driver ----------------------------------------------------------------------------
def libfuzzer_dict(path: Path) -> Path:
    """The hypothesis run's tokens in libFuzzer's dictionary format (`"\\xNN"` per line)."""
    from tests.fuzz_seeds import TOKENS

    lines = ['"' + "".join(f"\\x{b:02x}" for b in token) + '"' for token in TOKENS]
    path.write_text("\n".join(lines) + "\n")
    return path


def seed_corpus(folder: Path, seeds: list[bytes]) -> int:
    folder.mkdir(parents=True)
    for i, seed in enumerate(seeds):
        (folder / f"seed-{i:03d}").write_bytes(seed)
    return max((len(s) for s in seeds), default=0)


def run_target(name: str, args: argparse.Namespace, tmp: Path, dictionary: Path) -> Result:
    from tests.fuzz_targets import TARGETS

    target = TARGETS[name]
    corpus, artifacts = tmp / name / "corpus", tmp / name / "artifacts"
    longest = seed_corpus(corpus, target.seeds())
    artifacts.mkdir()
    flags = [
        f"-max_total_time={args.seconds}",
        f"-timeout={args.timeout}",
        f"-rss_limit_mb={args.rss_mb}",
        f"-max_len={min(max(4096, 2 * longest), 131072)}",
        f"-dict={dictionary}",
        "-seed=1",
        "-print_final_stats=1",
    ]
    command = [sys.executable, __file__, "--worker", name, "--corpus", str(corpus)]
    command += ["--artifacts", str(artifacts), "--", *flags]
    started = time.monotonic()
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=_env())
    seconds = time.monotonic() - started
    log = proc.stderr
    findings = keep_findings(name, artifacts)
    if proc.returncode != 0:
        # The log names the input even when the process died without writing an artifact
        # (a signal, a panic in a native extension).
        (FINDINGS / name).mkdir(parents=True, exist_ok=True)
        (FINDINGS / name / "fuzzer.log").write_text(log)
        if not findings:
            print(f"{name}: the fuzzer died (exit {proc.returncode}); see its log", flush=True)
            findings = [FINDINGS / name / "fuzzer.log"]
    return Result(
        name,
        target.covers,
        seconds,
        _stat(log, "number_of_executed_units"),
        _stat(log, "average_exec_per_sec"),
        _last_int(log, r"cov: (\d+)"),
        _stat(log, "peak_rss_mb"),
        findings,
        _fixed(name),
    )


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _stat(log: str, key: str) -> int:
    found = re.search(rf"stat::{key}:\s+(\d+)", log)
    return int(found.group(1)) if found else 0


def _last_int(log: str, pattern: str) -> int:
    found = re.findall(pattern, log)
    return int(found[-1]) if found else 0


def keep_findings(name: str, artifacts: Path) -> list[Path]:
    """Copy the run's findings to bench/fuzz-findings/ (git-ignored: they are inputs to fix,
    and move to tests/fuzz_regressions/ once they are)."""
    FINDINGS.mkdir(exist_ok=True)
    (FINDINGS / ".gitignore").write_text("*\n")
    kept = []
    for path in sorted(artifacts.iterdir()):
        if ARTIFACT.match(path.name):
            dest = FINDINGS / name / path.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
            kept.append(dest)
    return kept


def _fixed(name: str) -> int:
    folder = REGRESSIONS / name
    return sum(1 for p in folder.iterdir() if p.is_file()) if folder.is_dir() else 0


# --- BENCHMARKS.md -------------------------------------------------------------------------
def report(args: argparse.Namespace, results: list[Result], load: float) -> str:
    from importlib.metadata import version

    rows = [
        f"| {r.target} | {r.covers} | {r.executions:,} | {r.rate:,} | {r.coverage:,} | "
        f"{r.peak_rss_mb} | {len(r.findings)} | {r.fixed} |"
        for r in results
    ]
    total_exec = sum(r.executions for r in results)
    total_found = sum(len(r.findings) for r in results)
    total_fixed = sum(r.fixed for r in results)
    lines = [
        SECTION,
        "",
        f"Command: `.venv/bin/python bench/fuzz.py --seconds {args.seconds}` "
        f"(timeout {args.timeout} s an input, {args.rss_mb} MB RSS limit). Measured "
        f"{time.strftime('%Y-%m-%d', time.gmtime())}, while other engineers' jobs may have "
        "shared the machine.",
        f"- Machine: {os.cpu_count()} CPUs (nproc); Python {sys.version.split()[0]}, "
        f"atheris {version('atheris')}; load average at the start {load:.1f}",
        "",
        "Coverage-guided (atheris, libFuzzer's mutations over instrumented opsmetrics and "
        "PyYAML code), one process per target, starting from the target's seeds. The "
        "invariant: every input decodes or raises a `UserError` (a 4xx), never another "
        "exception, never a hang past the timeout, never past the memory limit. *Crashes* "
        "counts what this run found (copied to `bench/fuzz-findings/`); *fixed* counts the "
        "findings of earlier runs (and of the hypothesis run in `make test`) that were fixed "
        "in the decoder and are replayed from `tests/fuzz_regressions/` on every test run. "
        "*Coverage* is libFuzzer's count of covered edges in instrumented code.",
        "",
        "| target | covers | executions | exec/s | coverage | peak RSS MB | crashes | fixed |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        f"| **all {len(results)}** | | **{total_exec:,}** | | | | **{total_found}** | "
        f"**{total_fixed}** |",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=30, help="fuzzing time per target")
    parser.add_argument("--targets", default="", help="comma-separated names (default: all)")
    parser.add_argument("--timeout", type=int, default=10, help="seconds an input may take")
    parser.add_argument("--rss-mb", type=int, default=2048, help="memory limit per target")
    parser.add_argument("--no-write", action="store_true", help="print, do not edit the file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--artifacts", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("flags", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.corpus, args.artifacts, args.flags)
        return
    from bench.facts import write_section
    from tests.fuzz_targets import TARGETS

    names = [n for n in args.targets.split(",") if n] or list(TARGETS)
    unknown = set(names) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}; known: {', '.join(TARGETS)}")
    load = os.getloadavg()[0]
    results = []
    with tempfile.TemporaryDirectory(prefix="opsmetrics-fuzz-") as tmp:
        dictionary = libfuzzer_dict(Path(tmp) / "tokens.dict")
        for name in names:
            result = run_target(name, args, Path(tmp), dictionary)
            print(
                f"{name}: {result.executions:,} executions, {result.rate:,}/s, "
                f"cov {result.coverage}, crashes {len(result.findings)}",
                flush=True,
            )
            results.append(result)
    part = report(args, results, load)
    print(part)
    if not args.no_write:
        write_section(ROOT / "BENCHMARKS.md", SECTION.removeprefix("## "), part)


if __name__ == "__main__":
    main()
