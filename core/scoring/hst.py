"""Half-space trees (Tan, Ting & Liu, 2011) with per-sensor masses.

The online detector of the ensemble. The tree *structure* (random split feature and split value
per node, inside fixed feature limits) is shared by every sensor — the features are scale-free —
while each sensor keeps its own node masses: a *reference* window used for scoring and a *latest*
window being filled. Every ``window`` learned readings the latest masses become the reference.
This is the algorithm of river's ``anomaly.HalfSpaceTrees``; it is re-implemented here because
river's per-reading ``score_one``/``learn_one`` cost tens of microseconds each in Python (see
``benchmarks/bench_scoring.py``), while here the walk and the score are compiled
(``kernel.hst_paths_row`` / ``kernel.hst_mass_score``, called per reading by the scoring step;
the methods below wrap them for whole arrays). Scoring uses only the reference window, so a
reading never influences its own score.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from core.scoring.kernel import hst_mass_score, hst_paths_row

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]


class HalfSpaceForest:
    """Shared random structure; masses live in arrays the caller owns (one row per sensor)."""

    def __init__(self, n_features: int, n_trees: int, height: int, limit: float, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.n_trees = n_trees
        self.height = height
        self.n_internal = 2**height - 1
        self.n_nodes = 2 ** (height + 1) - 1
        self.split_feat = np.zeros((n_trees, self.n_internal), dtype=np.int64)
        self.split_val = np.zeros((n_trees, self.n_internal), dtype=np.float64)
        for t in range(n_trees):
            lo = np.full(n_features, -limit)
            hi = np.full(n_features, limit)
            self._grow(rng, t, 0, lo, hi)
        self.tree_idx = np.arange(n_trees)[None, :]

    def _grow(self, rng: np.random.Generator, t: int, node: int, lo: F64, hi: F64) -> None:
        if node >= self.n_internal:
            return
        q = int(rng.integers(lo.shape[0]))
        v = float(rng.uniform(lo[q], hi[q]))
        self.split_feat[t, node] = q
        self.split_val[t, node] = v
        hi_left = hi.copy()
        hi_left[q] = v
        lo_right = lo.copy()
        lo_right[q] = v
        self._grow(rng, t, 2 * node + 1, lo, hi_left)
        self._grow(rng, t, 2 * node + 2, lo_right, hi)

    def paths(self, x: F64) -> I64:
        """``(height + 1, m, trees)`` node ids visited by each row in each tree, root first."""
        rows = np.ascontiguousarray(x, dtype=np.float64)
        out = np.zeros((rows.shape[0], self.n_trees, self.height + 1), dtype=np.int64)
        for i in range(rows.shape[0]):
            hst_paths_row(rows[i], self.split_feat, self.split_val, out[i])
        return out.transpose(2, 0, 1)

    def flat_index(self, slots: I64, paths: I64) -> I64:
        """Indices into a ``(sensors, trees, nodes)`` mass array raveled, for each path node."""
        base = (slots[:, None] * self.n_trees + self.tree_idx) * self.n_nodes
        out: I64 = base[None, :, :] + paths
        return out

    def score(self, ref: F32, flat: I64, window: int) -> F64:
        """Raw anomaly score per row (see ``kernel.hst_mass_score``): ``-log(1 + mean over
        trees of r * 2^k)``. ``ref`` is the whole reference-mass array, ``flat`` from
        ``flat_index``; nodes with mass at most ``0.1 * window`` end the descent."""
        masses = ref.ravel().take(flat).astype(np.float64).transpose(1, 2, 0)  # (m, trees, h+1)
        return np.array([hst_mass_score(np.ascontiguousarray(r), 0.1 * window) for r in masses])

    def learn(self, latest: F32, flat: I64) -> None:
        """Add one to the latest-window mass of every node on each row's path (rows learned).

        Rows belong to distinct sensors, so no index repeats and a plain ``+=`` is exact."""
        latest.ravel()[flat.ravel()] += 1.0
