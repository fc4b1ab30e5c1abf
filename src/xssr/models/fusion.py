"""Confidence-aware fusion of a source and a target segmenter (after seed paper 003).

Paper 003 gives only its idea (an "infusion head" that weighs the two branches by their
confidence); the rule here is ours and has no trained parameters, so it cannot overfit a
handful of annotated images: at every pixel each branch's foreground probability is weighted
by its confidence, one minus its binary entropy in bits, and the fused probability is the
weighted mean. Where one branch is sure and the other hesitates, the sure one decides; where
both are equally sure, it is their average.
"""

from __future__ import annotations

import torch
from torch import nn

_EPS = 1e-6


def binary_confidence(p: torch.Tensor) -> torch.Tensor:
    """1 - H(p) / log 2: 1 for p in {0, 1}, 0 for p = 0.5."""
    p = p.clamp(_EPS, 1 - _EPS)
    entropy = -(p * p.log() + (1 - p) * (1 - p).log())
    return 1 - entropy / torch.log(torch.tensor(2.0, device=p.device))


def fuse_probabilities(p_source: torch.Tensor, p_target: torch.Tensor) -> torch.Tensor:
    w_source, w_target = binary_confidence(p_source), binary_confidence(p_target)
    return (w_source * p_source + w_target * p_target + _EPS * 0.5 * (p_source + p_target)) / (
        w_source + w_target + _EPS)


class FusionNet(nn.Module):
    """Two segmenters, one logit out: the logit of their confidence-weighted probability."""

    def __init__(self, source_branch: nn.Module, target_branch: nn.Module):
        super().__init__()
        self.source_branch = source_branch
        self.target_branch = target_branch

    @staticmethod
    def holds(state: dict) -> bool:
        """Whether a state dict is a FusionNet's."""
        return any(name.startswith("source_branch.") for name in state)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        fused = fuse_probabilities(torch.sigmoid(self.source_branch(images).float()),
                                   torch.sigmoid(self.target_branch(images).float()))
        return torch.logit(fused.clamp(_EPS, 1 - _EPS))
