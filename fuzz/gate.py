"""``make fuzz``: every fuzz target for N inputs; exits 1 if any crashed or did not run.

    .venv/bin/python fuzz/gate.py [--runs 100000] [--targets bundle,job,...]

Each target runs as its own process (``fuzz/fuzz.py TARGET -runs=N``); it passes when
the process exits 0 and libFuzzer reports ``Done N runs`` (a fuzzer that stopped early,
or never started, fails). A crash's input is kept under ``test-artifacts/``.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ("bundle", "bpsec", "job", "telecommand", "tle", "omm-json", "omm-csv", "scenario", "api")


def run_target(name: str, runs: int, artifacts: Path, extra: list[str]) -> tuple[bool, str]:
    """(passed, one line saying what happened)."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "fuzz" / "fuzz.py"), name, f"-runs={runs}", "-timeout=10",
         f"-artifact_prefix={artifacts}/fuzz-{name}-", *extra],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    log = proc.stderr + proc.stdout
    done = re.search(r"Done (\d+) runs", log)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raised = re.search(r"^(\w+(?:Error|Exception)\b.*)$", log, flags=re.M)
        why = raised.group(1) if raised else "libFuzzer stopped"
        return False, f"{name}: CRASH (exit {proc.returncode}) {why.strip()[:160]}"
    if done is None or int(done.group(1)) < runs:
        return False, f"{name}: did not run its {runs} inputs"
    return True, f"{name}: {int(done.group(1)):,} inputs, no crash ({wall:.0f} s)"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=100_000, help="inputs per target (100,000)")
    p.add_argument("--targets", default=",".join(TARGETS), help="comma-separated targets")
    p.add_argument("--artifacts", type=Path, default=ROOT / "test-artifacts")
    args, extra = p.parse_known_args()
    names = [t for t in args.targets.split(",") if t]
    unknown = sorted(set(names) - set(TARGETS))
    if unknown or args.runs < 1:
        print(f"fuzz: unknown targets {unknown} (choose from {', '.join(TARGETS)})"
              if unknown else "fuzz: --runs must be >= 1", file=sys.stderr)  # fmt: skip
        return 2
    args.artifacts.mkdir(parents=True, exist_ok=True)
    failed = 0
    for name in names:
        ok, line = run_target(name, args.runs, args.artifacts, extra)
        print(line, flush=True)
        failed += not ok
    print(f"fuzz: {len(names) - failed} of {len(names)} targets passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
