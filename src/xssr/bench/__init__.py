"""Benchmark harness: suites of cached runs, tables and cost measurements.

The names below load on first use, so that ``xssr.bench.cost`` and ``xssr.bench.peers`` (whose
measurements run in fresh processes that import them) do not load the pipeline, and with it
memory and time that belong to no selection.
"""

from importlib import import_module

_EXPORTS = {"Suite": "suite", "load_suite": "suite", "render_suite": "report", "run_suite": "runner",
            "Shard": "runner"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
