"""Distance from every pool sample to its nearest selected sample, kept up to date pick by pick.

Greedy selectors (XSSR's diversity term, k-center) need, after every pick, the distance
from each pool sample to its nearest picked one. Recomputing the distances from a new pick
to the whole pool streams every embedding through memory once per pick, which is what
bounds a 100,000-sample selection (about 15 ms per pick at 256 dimensions, float64, on a
2-core machine). Most of that work changes nothing: a pick can only come closer to samples
near it.

:class:`NearestSelected` therefore splits the pool into k-means blocks (contiguous after a
reordering) and, for every block, knows its centre, its radius and, per greedy run, the
largest current nearest-selected distance in it. By the triangle inequality no sample of a
block can be closer to a pick ``p`` than ``||p - centre|| - radius``; when that bound
(less a float64 rounding margin) is at least the block's largest distance, the block is
skipped. The result equals the unpruned update up to float64 rounding; the saving depends
on how clustered the embeddings are (none on structureless data, most of the work on
pools made of sites, scanners or anatomies).

Several runs (XSSR's alpha grid) advance in lockstep: ``distance`` has one row per run,
and one pass over a block serves every run's pick.

Everything is stored in *block order*: position ``i`` holds pool sample ``order[i]``.
"""

from __future__ import annotations

import math

import numpy as np

from .neighbors import squared_norms
from .typiclust import kmeans_labels

# Blocks of about this many samples; fewer than two blocks' worth is one block (no k-means).
BLOCK_ROWS = 2000
MAX_BLOCKS = 64
# Upper bound on the (annotated rows, pool) float64 distance block built at once.
_CHUNK_BYTES = 64 * 2**20


#: Smaller pools are one block: there the k-means costs more than the pruning saves
#: (measured at 10,000 x 256: XSSR and CoreSet gained nothing from 5 blocks).
MIN_BLOCKED_ROWS = 20_000


def block_count(n_samples: int) -> int:
    if n_samples < MIN_BLOCKED_ROWS:
        return 1
    return int(min(MAX_BLOCKS, max(1, n_samples // BLOCK_ROWS)))


class NearestSelected:
    """Nearest-selected distances for ``n_runs`` greedy runs over one pool.

    Parameters
    ----------
    points : ndarray of shape (n_samples, n_features), float64
        Prepared embeddings (see :func:`~xssr.selection.neighbors.prepare_embeddings`).
    n_runs : int >= 1

    Attributes
    ----------
    order : (n_samples,) int64, the pool index at each block-order position.
    position : (n_samples,) int64, the block-order position of each pool index.
    distance : (n_runs, n_samples) float64, in block order; inf until something is
        selected, and exactly 0 at the selected samples themselves.
    """

    def __init__(self, points: np.ndarray, n_runs: int):
        n = points.shape[0]
        # Translation does not change distances; centring keeps the GEMM expansion accurate.
        centred = points - points.mean(axis=0)
        n_blocks = block_count(n)
        labels = np.zeros(n, dtype=np.int64)
        if n_blocks > 1:
            # A fixed seed: the partition only decides which work is skipped, never a result.
            labels = _along_main_axis(centred, kmeans_labels(centred, n_blocks, np.random.default_rng(0)))
        self.order = np.argsort(labels, kind="stable")  # ascending pool index within a block
        self.position = np.empty(n, dtype=np.int64)
        self.position[self.order] = np.arange(n)
        self.points = np.ascontiguousarray(centred[self.order])
        self.sq_norms = squared_norms(self.points)
        counts = np.bincount(labels, minlength=n_blocks)
        counts = counts[counts > 0]  # k-means may leave a cluster empty
        self.starts = np.concatenate([[0], np.cumsum(counts)])
        self.centres = np.add.reduceat(self.points, self.starts[:-1], axis=0) / counts[:, None]
        # Block by block, so that no second copy of the pool is made.
        self.radius = np.array([
            np.sqrt(squared_norms(self.points[a:b] - centre).max())
            for a, b, centre in zip(self.starts[:-1], self.starts[1:], self.centres)
        ])
        self._centre_sq = squared_norms(self.centres)
        # The GEMM expansion ||x||^2 + ||y||^2 - 2 x.y of a squared distance is off by at
        # most about (4d + 24) u max||x||^2 (u = 2^-53): its square root bounds how much
        # closer a computed distance can look than the true one. Doubled for safety.
        largest = float(self.sq_norms.max(initial=0.0))
        self._margin = 2.0 * math.sqrt((4.0 * points.shape[1] + 24.0) * 2.0**-53 * largest)
        self.block_of = np.repeat(np.arange(counts.size), counts)
        self.distance = np.full((n_runs, n), np.inf)
        self.block_max = np.full((n_runs, counts.size), np.inf)
        # (run, block) pairs whose distances changed since a user last cleared this.
        self.touched = np.zeros((n_runs, counts.size), dtype=bool)
        self.rows_computed = 0  # distance rows x samples actually computed, for profiling

    @property
    def n_blocks(self) -> int:
        return self.radius.size

    def _distances(self, picks: np.ndarray, start: int, stop: int) -> np.ndarray:
        """Distances ``(len(picks), stop - start)`` from positions ``picks`` to ``start:stop``."""
        if picks.size == 1:  # matrix-vector: BLAS streams the block once at full speed
            dist = (self.points[start:stop] @ self.points[picks[0]])[None, :]
        else:  # one product streams the block once for every pick
            dist = self.points[picks] @ self.points[start:stop].T
        dist *= -2.0
        dist += self.sq_norms[picks][:, None]
        dist += self.sq_norms[None, start:stop]
        np.maximum(dist, 0.0, out=dist)
        np.sqrt(dist, out=dist)
        inside = (picks >= start) & (picks < stop)
        dist[np.flatnonzero(inside), picks[inside] - start] = 0.0  # a sample is 0 from itself
        self.rows_computed += picks.size * (stop - start)
        return dist

    def add(self, picks: np.ndarray) -> None:
        """Select position ``picks[r]`` in run ``r`` and update every run's distances."""
        picks = np.asarray(picks, dtype=np.int64)
        unique, row_of = np.unique(picks, return_inverse=True)
        runs_of = [np.flatnonzero(row_of == j) for j in range(unique.size)]
        # No sample of block b is nearer to pick p than ||p - centre_b|| - radius_b.
        to_centre = np.sqrt(np.maximum(
            squared_norms(self.points[unique])[:, None] + self._centre_sq[None, :]
            - 2.0 * self.points[unique] @ self.centres.T, 0.0))
        lower = to_centre - self.radius - (self._margin + 1e-12 * (to_centre + self.radius))
        # needed[j, b]: some run of pick j might get closer to a sample of block b.
        needed = np.stack([(lower[j] < self.block_max[runs].max(axis=0)) for j, runs in enumerate(runs_of)])
        # Consecutive blocks needed by the same picks are done by one product.
        changes = np.flatnonzero((needed[:, 1:] != needed[:, :-1]).any(axis=0)) + 1
        bounds = np.concatenate([[0], changes, [self.n_blocks]])
        for first, last in zip(bounds[:-1], bounds[1:]):
            which = np.flatnonzero(needed[:, first])
            if not which.size:
                continue
            start, stop = self.starts[first], self.starts[last]
            dist = self._distances(unique[which], start, stop)
            offsets = self.starts[first:last] - start
            for row, j in enumerate(which):
                for r in runs_of[j]:
                    window = self.distance[r, start:stop]
                    np.minimum(window, dist[row], out=window)
                    self.block_max[r, first:last] = np.maximum.reduceat(window, offsets)
                    self.touched[r, first:last] = True

    def first_best(self, score: np.ndarray) -> np.ndarray:
        """Per run, the position of the highest ``score`` (block order, ``(n_runs, n)``);
        exact ties go to the lowest pool index, as if the pool had never been reordered."""
        best = np.argmax(score, axis=1)
        if self.n_blocks == 1:  # block order is pool order: argmax's first is the lowest index
            return best
        for r, top in enumerate(score[np.arange(score.shape[0]), best]):
            tied = np.flatnonzero(score[r] == top)
            if tied.size > 1:
                best[r] = tied[np.argmin(self.order[tied])]
        return best

    def add_to_all(self, positions: np.ndarray) -> None:
        """Select ``positions`` in every run (samples annotated in an earlier round)."""
        positions = np.asarray(positions, dtype=np.int64)
        n = self.points.shape[0]
        chunk = max(1, _CHUNK_BYTES // (8 * n))
        for begin in range(0, positions.size, chunk):
            rows = positions[begin:begin + chunk]
            dist = self.points[rows] @ self.points.T
            dist *= -2.0
            dist += self.sq_norms[rows][:, None]
            dist += self.sq_norms[None, :]
            np.maximum(dist, 0.0, out=dist)
            nearest = np.sqrt(dist.min(axis=0))
            nearest[rows] = 0.0  # a sample is exactly 0 from itself
            np.minimum(self.distance, nearest, out=self.distance)
        self.block_max = np.maximum.reduceat(self.distance, self.starts[:-1], axis=1)
        self.touched[:] = True


def _along_main_axis(points: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Relabel clusters in the order of their centres along the first principal axis.

    Neighbouring clusters then get neighbouring labels, so the blocks a pick cannot skip
    tend to form a few long runs (one product each) rather than many short ones.
    """
    counts = np.bincount(labels)
    used = np.flatnonzero(counts)
    centres = np.stack([points[labels == c].mean(axis=0) for c in used])
    centres -= centres.mean(axis=0)
    axis = np.linalg.svd(centres, full_matrices=False)[2][0]
    rank = np.empty(labels.max() + 1, dtype=np.int64)
    rank[used[np.argsort(centres @ axis, kind="stable")]] = np.arange(used.size)
    return rank[labels]
