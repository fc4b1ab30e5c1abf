"""The one list of selection methods a run can compare, and what each needs.

A *method* is what a user names (``--methods xssr,random``); it runs one *algorithm* of
:func:`xssr.selection.select` with some settings, and may pin some of them (the XSSR
ablations are aliases of ``"xssr"`` with one term switched off). ``"full"`` is the upper
bound, the whole pool, and runs no algorithm.

Adding a method is one file with its algorithm (registered with
:func:`xssr.selection.selector.register_algorithm`) plus one :func:`register` line here or in
that file. Pure Python: no torch, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

#: SelectConfig settings the XSSR algorithm reads; the baselines read budget and metric only.
XSSR_SETTINGS = ("budget", "k", "metric", "beta", "alpha", "alpha_grid", "alpha_criterion", "backend")
BASELINE_SETTINGS = ("budget", "metric", "backend")


@dataclass(frozen=True)
class Method:
    """A selection method as a run names it.

    Attributes
    ----------
    name : str
        As written in ``select.methods``.
    algorithm : str or None
        The :func:`~xssr.selection.select` algorithm it runs; ``None`` for ``"full"``.
    uses_embeddings : bool
        Whether it reads pool embeddings (so a run must train and apply an embedder).
    uses_source : bool
        Whether it reads source embeddings too (so the source images are needed).
    settings : tuple of str
        The ``SelectConfig`` fields passed to the algorithm.
    pinned : mapping
        Settings the method fixes whatever the configuration says (ablations).
    summary : str
        One line for help texts.
    uses_scores : bool
        Whether it reads a per-image uncertainty of the source-trained U-Net (so the source
        masks, or the user's source weights, are needed).
    """

    name: str
    algorithm: str | None
    uses_embeddings: bool
    uses_source: bool = False
    settings: tuple[str, ...] = BASELINE_SETTINGS
    pinned: Mapping[str, Any] = field(default_factory=dict)
    summary: str = ""
    uses_scores: bool = False

    def select_kwargs(self, select_config) -> dict[str, Any]:
        """Keyword arguments of :func:`~xssr.selection.select` for this method under ``select_config``."""
        if self.algorithm is None:
            raise ValueError(f"The method {self.name!r} is not a selection: it trains on the whole pool.")
        values = {name: getattr(select_config, name) for name in self.settings}
        if "alpha_grid" in values:
            values["alpha_grid"] = list(values["alpha_grid"])
        # At the values they were added with, later settings are left out, so cached selections
        # (keyed by these arguments) stay valid: the paper's calibration, exact neighbour search.
        for name, default in (("alpha_criterion", "coverage"), ("backend", "auto")):
            if values.get(name) == default:
                del values[name]
        return {"method": self.algorithm, **values, **self.pinned}


_METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add ``method`` to the registry (a name is registered once)."""
    if method.name in _METHODS:
        raise ValueError(f"A selection method named {method.name!r} is already registered.")
    _METHODS[method.name] = method
    return method


def unregister(name: str) -> None:
    """Remove a method (for tests that register a toy one)."""
    _METHODS.pop(name, None)


def get_method(name: str) -> Method:
    try:
        return _METHODS[name]
    except KeyError:
        raise ValueError(f"Unknown selection method {name!r}; valid: {', '.join(_METHODS)}.") from None


def method_names() -> tuple[str, ...]:
    return tuple(_METHODS)


register(Method("xssr", "xssr", True, True, XSSR_SETTINGS,
                summary="XSSR: density, novelty and diversity, alpha calibrated on coverage"))
register(Method("coreset", "coreset", True, summary="k-center greedy (Sener & Savarese, 2018)"))
register(Method("uncertainty", "uncertainty", True, uses_scores=True,
                summary="uncertainty-weighted k-center on the source U-Net's uncertainty"))
register(Method("random", "random", False, summary="uniform without replacement"))
register(Method("full", None, False, summary="the whole pool: the upper bound"))
register(Method("typiclust", "typiclust", True, summary="TypiClust (Hacohen et al., 2022)"))
register(Method("probcover", "probcover", True, summary="ProbCover (Yehuda et al., 2022)"))
register(Method("stratified-random", "stratified-random", False,
                summary="random within each site, in proportion to its share of the pool"))
register(Method("xssr-no-density", "xssr", True, True, XSSR_SETTINGS, {"beta": 0.0},
                summary="XSSR ablation: density weight 0"))
register(Method("xssr-no-novelty", "xssr", True, False, XSSR_SETTINGS, {"alpha": 0.0},
                summary="XSSR ablation: novelty weight 0"))
register(Method("xssr-no-diversity", "xssr", True, True, XSSR_SETTINGS, {"alpha": 1.0},
                summary="XSSR ablation: diversity weight 0"))
