"""Per-output-channel scales for ternary {-α, 0, +α} and binary {-α, +α} weights, from pretrained W.

Every method returns α [out]; the codes are then always the nearest centre (quantize_codes), so an
initialization is exactly a choice of centres:

  kmeans          exact 1-D k-means with symmetric centres {-α, 0, α}: the global L2 optimum per row.
                  Sorting |w| descending, keeping the top j weights gives α_j = S_j / j and an error
                  Σw² − S_j²/j (S_j = sum of the top j), so the best j maximizes S_j²/j: O(K log K).
  lloyd           the research code's per-row Lloyd on |w| (threshold α/2, α = mean |w| above it),
                  started from mean |w|: converges to a local optimum of the same objective.
  kmeans_sklearn  scikit-learn KMeans(3) on each row's raw weights (asymmetric centres c₋ < c₀ < c₊),
                  projected to the kernel's symmetric format as α = (c₊ − c₋)/2. Slow (one fit per row).
  twn             Ternary Weight Networks: Δ = 0.7·mean|w|, α = mean |w| over |w| > Δ.
  absmean         BitNet b1.58: α = mean |w|.
  output          data-aware: α minimizing the layer's output error on calibration inputs (quant/calibrate.py).

Binary: the L2-optimal symmetric scale is mean |w| for every method except kmeans_sklearn (2 clusters).
"""

import numpy as np

TERNARY_INITS = ("kmeans", "lloyd", "kmeans_sklearn", "twn", "absmean")
BINARY_INITS = TERNARY_INITS
# Inits that also need the layer's inputs on calibration data (quant/calibrate.py), not only its weights.
DATA_INITS = ("output",)
_EPS = 1e-12


def quantize_codes(w: np.ndarray, alpha: np.ndarray, mode: str) -> np.ndarray:
    """Nearest-centre codes: int8 in {-1, 0, 1} (ternary) or {-1, 1} (binary; 0 maps to +1)."""
    if mode == "binary":
        return np.where(w >= 0, 1, -1).astype(np.int8)
    return np.clip(np.round(w / np.maximum(alpha, _EPS)[:, None]), -1, 1).astype(np.int8)


def _kmeans_exact(a: np.ndarray) -> np.ndarray:
    s = np.cumsum(-np.sort(-a, axis=1), axis=1)
    j = np.arange(1, a.shape[1] + 1)
    best = np.argmax(s * s / j, axis=1)
    return s[np.arange(a.shape[0]), best] / (best + 1)


def _lloyd(a: np.ndarray, iterations: int = 30) -> np.ndarray:
    alpha = a.mean(axis=1)
    for _ in range(iterations):
        above = a > alpha[:, None] / 2
        alpha = np.where(above.any(axis=1),
                         (a * above).sum(axis=1) / np.maximum(above.sum(axis=1), 1), alpha)
    return alpha


def _sklearn_centres(w: np.ndarray, clusters: int) -> np.ndarray:
    from sklearn.cluster import KMeans
    centres = np.empty((w.shape[0], clusters))
    for r, row in enumerate(w):
        if np.unique(row).size < clusters:  # degenerate row: fall back to its extremes
            centres[r] = np.linspace(row.min(), row.max(), clusters)
            continue
        fit = KMeans(n_clusters=clusters, n_init=1, random_state=0).fit(row[:, None].astype(np.float64))
        centres[r] = np.sort(fit.cluster_centers_[:, 0])
    return centres


def init_scale(w: np.ndarray, method: str, mode: str) -> np.ndarray:
    """α [out] for weights w [out, in]."""
    w = np.asarray(w, np.float64)
    a = np.abs(w)
    if method == "kmeans_sklearn":
        c = _sklearn_centres(w, 3 if mode == "ternary" else 2)
        alpha = (c[:, -1] - c[:, 0]) / 2
    elif mode == "binary" or method == "absmean":
        alpha = a.mean(axis=1)
    elif method == "kmeans":
        alpha = _kmeans_exact(a)
    elif method == "lloyd":
        alpha = _lloyd(a)
    elif method == "twn":
        above = a > 0.7 * a.mean(axis=1, keepdims=True)
        alpha = (a * above).sum(axis=1) / np.maximum(above.sum(axis=1), 1)
    else:
        raise ValueError(f"unknown init {method!r} (known: {', '.join(TERNARY_INITS)})")
    return np.maximum(alpha, _EPS).astype(np.float32)


def relative_error(w: np.ndarray, alpha: np.ndarray, mode: str) -> float:
    """‖W − α·t‖ / ‖W‖ for the nearest-centre codes t."""
    w = np.asarray(w, np.float64)
    wq = alpha[:, None].astype(np.float64) * quantize_codes(w, alpha, mode)
    return float(np.linalg.norm(w - wq) / max(np.linalg.norm(w), _EPS))
