"""Measure one benchmark case in a fresh process: median wall time and peak RSS.

A case is a zero-argument *factory* ``module:function`` that does its setup (load the model, build
the input) and returns the callable to time. Running each case in its own interpreter makes peak RSS
per case meaningful (ru_maxrss never goes down within a process). :func:`compare` runs several cases
in alternating rounds, so that a slow spell of a shared machine falls on all of them alike.

    python -m benchmarks.harness benchmarks.bench_saliency:ours_smoothgrad --repeat 3
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import torch


@dataclass
class Measurement:
    case: str
    median_s: float
    peak_rss_mb: float
    setup_rss_mb: float

    @property
    def extra_rss_mb(self) -> float:
        """Peak RSS above what the setup (model, input) already used."""
        return self.peak_rss_mb - self.setup_rss_mb


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _run_here(case: str, repeat: int, warmup: int) -> dict:
    module, _, name = case.partition(":")
    fn = getattr(importlib.import_module(module), name)()
    setup_rss = _rss_mb()
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"times": times, "peak_rss_mb": _rss_mb(), "setup_rss_mb": setup_rss}


def _run_subprocess(case: str, repeat: int, warmup: int, threads: int | None) -> dict:
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.harness", case, "--repeat", str(repeat), "--warmup", str(warmup)],
        check=True, capture_output=True, text=True, env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _summary(case: str, runs: list[dict]) -> Measurement:
    return Measurement(case, statistics.median(t for run in runs for t in run["times"]),
                       max(run["peak_rss_mb"] for run in runs), min(run["setup_rss_mb"] for run in runs))


def measure(case: str, repeat: int = 3, warmup: int = 1, threads: int | None = None) -> Measurement:
    """Run ``case`` in a subprocess and return its measurement."""
    return _summary(case, [_run_subprocess(case, repeat, warmup, threads)])


def compare(cases: list[tuple[str, str]], rounds: int = 3, repeat: int = 3,
            warmup: int = 1) -> list[tuple[str, Measurement]]:
    """Measure (label, case) pairs in ``rounds`` alternating rounds, one subprocess per case and round:
    the median over every timed call of a case, and its highest peak RSS."""
    runs = {case: [] for _, case in cases}
    for _ in range(rounds):
        for _, case in cases:
            runs[case].append(_run_subprocess(case, repeat, warmup, None))
    return [(label, _summary(case, runs[case])) for label, case in cases]


def machine_info() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"Python {platform.python_version()}")


def table(rows: list[tuple[str, Measurement]], reference: str) -> str:
    """Markdown table of measurements with time ratios against the row labelled ``reference``."""
    ref = dict(rows)[reference]
    lines = ["| variant | median time (s) | ratio vs " + reference + " | peak RSS (MB) | RSS above setup (MB) |",
             "|---|---:|---:|---:|---:|"]
    for label, m in rows:
        lines.append(f"| {label} | {m.median_s:.3f} | {m.median_s / ref.median_s:.2f}x | {m.peak_rss_mb:.0f} | {m.extra_rss_mb:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("case")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()
    print(json.dumps(_run_here(args.case, args.repeat, args.warmup)))
