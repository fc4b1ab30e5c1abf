"""Benchmark harness: suites of cached runs, tables and cost measurements."""

from xssr.bench.report import render_suite
from xssr.bench.runner import run_suite
from xssr.bench.suite import Suite, load_suite

__all__ = ["Suite", "load_suite", "render_suite", "run_suite"]
