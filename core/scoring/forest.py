"""A fitted scikit-learn IsolationForest compiled to flat numpy arrays.

Why: ``IsolationForest.score_samples`` costs milliseconds per call whatever the batch size
(input validation, joblib dispatch, one Python-level call per tree), so a streaming scorer that
calls it per reading is capped at a few hundred readings/s. The flat form is walked by compiled
code (``kernel.forest_score_row``, which the scoring step calls per reading). Scores equal
sklearn's ``-score_samples`` to floating-point precision (tested in
``tests/unit/test_scoring_forest.py``); the tree layout read here is scikit-learn's ``tree_``
API, which is why scikit-learn is pinned in pyproject.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from core.scoring.kernel import forest_scores

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def average_path_length(n: F64) -> F64:
    """c(n) of Liu et al.: the mean path length of an unsuccessful BST search among n points
    (same formula and edge cases as sklearn's ``_average_path_length``)."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    two = n == 2
    big = n > 2
    out[two] = 1.0
    nb = n[big]
    out[big] = 2.0 * (np.log(nb - 1.0) + np.euler_gamma) - 2.0 * (nb - 1.0) / nb
    return out


class CompiledForest:
    """Flat arrays of every node of every tree; ``anomaly_score(X)`` = ``-score_samples(X)``."""

    def __init__(self, forest: Any) -> None:
        trees = forest.estimators_
        feats = forest.estimators_features_
        sizes = [t.tree_.node_count for t in trees]
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        total = int(sum(sizes))
        self.feature = np.zeros(total, dtype=np.int64)
        self.threshold = np.zeros(total, dtype=np.float64)
        self.left = np.zeros(total, dtype=np.int64)
        self.right = np.zeros(total, dtype=np.int64)
        self.leaf_value = np.zeros(total, dtype=np.float64)
        max_depth = 0
        for i, (est, fmap) in enumerate(zip(trees, feats, strict=True)):
            self._add_tree(est.tree_, np.asarray(fmap, dtype=np.int64), int(offsets[i]))
            max_depth = max(max_depth, int(est.tree_.max_depth))
        # children[2 * i] is node i's left child, children[2 * i + 1] its right: one gather per
        # level instead of two plus a select.
        self.children = np.empty(2 * total, dtype=np.int64)
        self.children[0::2] = self.left
        self.children[1::2] = self.right
        self.roots = offsets
        self.max_depth = max_depth
        self.n_trees = len(trees)
        self.n_features = int(forest.n_features_in_)
        self.norm = float(self.n_trees * average_path_length(np.array([forest.max_samples_]))[0])

    def _add_tree(self, tree: Any, fmap: I64, off: int) -> None:
        n = tree.node_count
        sl = slice(off, off + n)
        left = np.asarray(tree.children_left, dtype=np.int64)
        right = np.asarray(tree.children_right, dtype=np.int64)
        is_leaf = left == -1
        idx = np.arange(n, dtype=np.int64)
        # A leaf points to itself, so walking max_depth levels parks every row on its leaf.
        self.left[sl] = np.where(is_leaf, idx, left) + off
        self.right[sl] = np.where(is_leaf, idx, right) + off
        feat = np.asarray(tree.feature, dtype=np.int64)
        self.feature[sl] = np.where(is_leaf, 0, fmap[np.maximum(feat, 0)])
        self.threshold[sl] = np.where(is_leaf, np.inf, tree.threshold)
        depth = _node_depths(left, right)
        samples = np.asarray(tree.n_node_samples, dtype=np.float64)
        self.leaf_value[sl] = np.where(is_leaf, depth + average_path_length(samples), 0.0)

    def arrays(self) -> tuple[I64, F64, I64, F64, I64]:
        """The node arrays in the order the scoring kernel takes them."""
        return self.feature, self.threshold, self.children, self.leaf_value, self.roots

    @staticmethod
    def empty_arrays() -> tuple[I64, F64, I64, F64, I64]:
        """Placeholders of the same types as ``arrays()`` for an engine without a forest."""
        i64, f64 = np.zeros(0, dtype=np.int64), np.zeros(0)
        return i64, f64, i64, f64, i64

    def anomaly_score(self, x: F64) -> F64:
        """Isolation score s(x) in (0, 1) per row; > 0.5 means easier than average to isolate."""
        rows = np.ascontiguousarray(x, dtype=np.float64)
        return forest_scores(rows, *self.arrays(), self.max_depth, self.norm)


def _node_depths(left: I64, right: I64) -> F64:
    depth = np.zeros(left.shape[0], dtype=np.float64)
    # Node ids are assigned parent-before-child in sklearn trees, so one forward pass suffices.
    for i in range(left.shape[0]):
        if left[i] != -1:
            depth[left[i]] = depth[i] + 1.0
            depth[right[i]] = depth[i] + 1.0
    return depth
