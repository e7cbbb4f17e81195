"""Benchmarks: ours vs Captum vs pytorch-grad-cam vs the source's loops, measured side by side.

`make bench` (python -m benchmarks) runs every ``bench_*.py`` module and writes RESULTS.md.
"""
