"""The compiled scoring step: every reading of a batch, one at a time, in numba.

Why compiled: the arithmetic per reading is a few hundred flops, but a numpy formulation pays
~250 array calls (microseconds of dispatch each) per *round* of at most one reading per sensor.
With many sensors per round that cost is shared; replaying one sensor's history (``backtest``)
or the scorer's small live batches pay it per reading. This kernel walks the batch in order and
updates the reading's own sensor row of the state arrays in place, so a batch of any shape costs
only its arithmetic. Sensors are independent and the models read-only, so reading-by-reading
processing is exactly the former round-by-round result.

Everything numba compiles lives in this one module on purpose: numba's on-disk cache is keyed by
the source file of the cached function only, so a helper in another module could change without
invalidating the compiled code that inlined it. ``forest.py`` and ``hst.py`` call in here.

The state layout (columns of ``Engine.state``) and the parameter vectors are defined here too,
for the same reason: a column index is a compile-time constant of the compiled code.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba
import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]
F32 = npt.NDArray[np.float32]
_F = TypeVar("_F", bound=Callable[..., Any])


def jit(fn: _F) -> _F:
    """``numba.njit`` with the settings every kernel here needs; keeps ``fn``'s type for mypy.

    ``error_model="numpy"``: a division by zero yields inf/nan as in numpy instead of raising;
    ``nogil``: the scorer runs scoring in a worker thread, which then does not hold the GIL;
    ``cache``: compiled code is stored on disk (``NUMBA_CACHE_DIR`` or ``__pycache__``), so a
    new process loads it in milliseconds instead of compiling for seconds.
    """
    return cast(_F, numba.njit(cache=True, error_model="numpy", nogil=True)(fn))


# Columns of the per-sensor scalar state matrix.
(
    N,
    NL,
    T_LAST,
    LOG_DT,
    DT_N,
    X_PREV,
    LEVEL,
    SCALE2,
    SIG,
    MS,
    DABS_L,
    DABS_S,
    QUANT,
    RUN,
    RUN_TYP,
    CUSUM_P,
    CUSUM_N,
    STREAK_N,
    STREAK_S1,
    STREAK_S2,
    IF_MU,
    IF_VAR,
    IF_N,
    H_MU,
    H_VAR,
    H_N,
    HST_COUNT,
    HST_READY,
    DRIFTS,
    SHIFTS,
    STREAK_D,
    ALARM_RATE,
    INFL,
    VAR_S,
    REGIME,
    SWITCHES,
    SW_RATE,
    HOLD,
    LAST_VISIT,
    VISIT_RUN,
    STAY_ACCEPTED,
    STAY_N,
    PL,
    FL,
    PR_PREV,
    PR_C0,
    PR_C1,
    PE_N,
    MSE_S,
    MSE_F,
    Q80_S,
    Q95_S,
    Q80_F,
    Q95_F,
    MX_LL,
    MX_LN,
    MX_NATS,
    MX_QLOW,
    RL,
    RV_P1,
    RV_P2,
    RV_C1,
    RV_C2,
) = range(63)
N_COLS = 63

# The IF calibration prior counts as this many readings of the sensor's own.
IF_PRIOR_N = 50.0
# The half-space trees' calibration needs this many reference-window scores before it is trusted.
H_MIN_N = 20.0
SQRT_PI_2 = 1.2533141373155  # E|e| = sigma * sqrt(2/pi) for Gaussian e

# Indices into the float parameter vector (built by ``Engine._params``).
(
    P_WARMUP,
    P_WARM_HALF,
    P_GAP_CAP,
    P_GAP_FACTOR,
    P_SHORT_A,
    P_FEATURE_CLIP,
    P_VAR_ALPHA,
    P_VAR_CAP,
    P_Z_VAR,
    P_SLOPE,
    P_Z_RES,
    P_Z_IF,
    P_Z_HST,
    P_W_RES,
    P_W_IF,
    P_W_HST,
    P_THRESHOLD,
    P_CLEAN_Z,
    P_LAMBDA,
    P_PRIOR_VAR,
    P_COV_MAX,
    P_RES_ALPHA,
    P_CUSUM_K,
    P_CUSUM_H,
    P_LEVEL_ALPHA,
    P_SCALE_ALPHA,
    P_CALIB_ALPHA,
    P_HST_WINDOW,
    P_HST_LIMIT,
    P_ALARM_ALPHA,
    P_MAX_ALARM,
    P_Q_GAUSS,
    P_ADAPT_AFTER,
    P_ADAPT_CONS,
    P_IF_MEDIAN,
    P_IF_VAR0,
    P_IF_VAR_FLOOR,
    P_H_VAR_FLOOR,
    P_IF_NORM,
    P_PERIOD_S,
    P_REGIME_Z,
    P_REGIME_KNOWN,
    P_REGIME_MIN_NL,
    P_REGIME_MEMORY_S,
    P_REGIME_RATE_ALPHA,
    P_SWITCH_NATS_SCALE,
    P_REGIME_SEP,
    P_REGIME_LIVED,
    P_REGIME_FREQUENT,
    P_PROFILE_WEIGHT,
    P_PROFILE_LEVEL_TAU,
    P_PROFILE_ERROR_TAU,
    P_PROFILE_Q_STEP,
    P_PROFILE_CLIP,
    P_PROFILE_MEAN_TAU,
    P_MIX_MARGIN,
    P_MIX_GATE,
    P_MIX_ALPHA,
) = range(58)
N_PARAMS = 58
# Indices into the integer parameter vector.
I_P, I_D, I_FOURIER_K, I_HAS_FOREST, I_FOREST_DEPTH, I_HST_HEIGHT = range(6)
N_IPARAMS = 6


# ---------------------------------------------------------------------- numpy-equal scalars


@jit
def _max(a: float, b: float) -> float:
    # np.maximum semantics (NaN wins), which the builtin max does not promise.
    return a if (a > b or a != a) else b


@jit
def _min(a: float, b: float) -> float:
    return a if (a < b or a != a) else b


@jit
def _clip(a: float, lo: float, hi: float) -> float:
    return _min(_max(a, lo), hi)


@jit
def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-_clip(z, -50.0, 50.0)))


# ---------------------------------------------------------------------- isolation forest


@jit
def forest_score_row(
    feats: F64,
    feature: I64,
    threshold: F64,
    children: I64,
    leaf_value: F64,
    roots: I64,
    max_depth: int,
    norm: float,
) -> float:
    """Isolation score of one feature row: ``-score_samples`` of the sklearn forest.

    sklearn casts inputs to float32 before comparing with its (float64) thresholds; casting here
    too makes a value right at a threshold take sklearn's branch. Leaves point to themselves, so
    every tree can be walked ``max_depth`` levels. Walking all trees level by level, not tree by
    tree, makes consecutive loads independent so the CPU overlaps them: a walk is a chain of
    dependent loads into ~1 MB of nodes (measured: about 3x faster than tree by tree).
    """
    x32 = np.empty(feats.shape[0])
    for j in range(feats.shape[0]):
        x32[j] = np.float64(np.float32(feats[j]))
    nodes = roots.copy()
    for _ in range(max_depth):
        for r in range(nodes.shape[0]):
            node = nodes[r]
            nodes[r] = children[2 * node + (1 if x32[feature[node]] > threshold[node] else 0)]
    depth_sum = 0.0
    for r in range(nodes.shape[0]):
        depth_sum += leaf_value[nodes[r]]
    return float(2.0 ** (-depth_sum / norm))


@jit
def forest_scores(
    x: F64,
    feature: I64,
    threshold: F64,
    children: I64,
    leaf_value: F64,
    roots: I64,
    max_depth: int,
    norm: float,
) -> F64:
    """``forest_score_row`` of every row of ``x``."""
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        out[i] = forest_score_row(
            x[i], feature, threshold, children, leaf_value, roots, max_depth, norm
        )
    return out


# ---------------------------------------------------------------------- half-space trees


@jit
def hst_paths_row(feats: F64, split_feat: I64, split_val: F64, out: I64) -> None:
    """Node ids visited in each tree (``out``: trees x (height + 1), root first)."""
    height = out.shape[1] - 1
    for tr in range(split_feat.shape[0]):
        node = 0
        out[tr, 0] = 0
        for level in range(height):
            go_left = feats[split_feat[tr, node]] < split_val[tr, node]
            node = 2 * node + (1 if go_left else 2)
            out[tr, level + 1] = node


@jit
def hst_mass_score(masses: F64, limit: float) -> float:
    """Raw score ``-log(1 + mean over trees of r * 2^k)`` from each tree's path masses.

    ``masses``: trees x (height + 1) reference masses along the path. The terminal node of a
    tree is the first on its path whose mass is at most ``limit`` (else the leaf), ``k`` its
    depth and ``r`` its mass (Tan et al.'s mass score, log-compressed so that its per-sensor
    distribution is closer to Gaussian for calibration).
    """
    last = masses.shape[1] - 1
    total = 0.0
    for tr in range(masses.shape[0]):
        stop = last
        for level in range(last):
            if masses[tr, level] <= limit:
                stop = level
                break
        total += masses[tr, stop] * 2.0 ** float(stop)
    return -math.log1p(total / masses.shape[0])


@jit
def _hst_score(ref: F32, paths: I64, masses: F64, limit: float) -> float:
    for tr in range(paths.shape[0]):
        for level in range(paths.shape[1]):
            masses[tr, level] = np.float64(ref[tr, paths[tr, level]])
    return hst_mass_score(masses, limit)


@jit
def _hst_learn(latest: F32, paths: I64) -> None:
    for tr in range(paths.shape[0]):
        for level in range(paths.shape[1]):
            latest[tr, paths[tr, level]] += np.float32(1.0)


# ---------------------------------------------------------------------- forecaster


@jit
def _regressors(
    phi: F64, lags: F64, level: float, scale: float, t: float, ip: I64, period_s: float
) -> None:
    """``[1, u_{t-1}..u_{t-p}, fourier(t)]`` as ``forecaster.regressors`` builds it."""
    p, k = ip[I_P], ip[I_FOURIER_K]
    phi[0] = 1.0
    for i in range(p):
        if ip[I_D] == 0:
            phi[1 + i] = (lags[i] - level) / scale
        else:
            phi[1 + i] = (lags[i] - lags[i + 1]) / scale
    if k > 0:
        phase = (2.0 * math.pi / period_s) * (t % period_s)
        for h in range(k):
            ang = phase * float(h + 1)
            phi[1 + p + 2 * h] = math.sin(ang)
            phi[2 + p + 2 * h] = math.cos(ang)


@jit
def _rls_update(
    theta: F64, cov: F64, phi: F64, err: float, lam: float, cov_max: float, p_phi: F64
) -> None:
    """``forecaster.rls_update`` for one row: gain step, symmetrised covariance, trace cap."""
    k = phi.shape[0]
    denom = 0.0
    for i in range(k):
        acc = 0.0
        for j in range(k):
            acc += cov[i, j] * phi[j]
        p_phi[i] = acc
    for i in range(k):
        denom += phi[i] * p_phi[i]
    denom += lam
    for i in range(k):
        gain = p_phi[i] / denom
        theta[i] += gain * err
        for j in range(k):
            cov[i, j] = (cov[i, j] - gain * p_phi[j]) / lam
    tr = 0.0
    for i in range(k):
        for j in range(i + 1, k):
            avg = (cov[i, j] + cov[j, i]) * 0.5
            cov[i, j] = avg
            cov[j, i] = avg
        tr += cov[i, i]
    if tr > cov_max:
        cov *= cov_max / tr


@jit
def _stabilise(theta: F64, p: int) -> None:
    """``forecaster.stabilise`` for one row (sum |phi_i| <= 0.999)."""
    total = 0.0
    for i in range(1, 1 + p):
        total += abs(theta[i])
    if total > 0.999:
        for i in range(1, 1 + p):
            theta[i] *= 0.999 / total


@jit
def _reset_cov(cov: F64, var: float) -> None:
    cov[:, :] = 0.0
    for i in range(cov.shape[0]):
        cov[i, i] = var


# ---------------------------------------------------------------------- regime memory
#
# Many real sensors have discrete operating levels: a load switching between set points, a pump
# or compressor on and off, a machine that runs by day and idles by night. To a forecaster every
# switch is a jump it cannot predict, so without help each one alerts — or the band widens until
# real incidents hide in it. Each sensor therefore remembers up to ``regimes`` levels it has
# operated at (the level, the residual sigma, typical |difference| and long-run scale it had
# there, and how many readings it spent there, decaying with ``regime_memory_s``). A reading
# the current forecast does not explain but that sits within ``regime_z`` spreads of a *known*
# level (``_regime_known``) is a switch, not an anomaly: the state is translated
# to that level (level, short mean, previous value and the forecaster's lags move by the same
# offset, so the forecast and every feature see a continuation of the new level) and the
# level's own scales are restored. A value between the levels, a level never seen, or noise
# unlike the level's own still alert. During the warm-up, when every reading is learned, a
# reading far from the forecast opens a new level at once: that is how the levels of a
# switching load are learned before any verdict. After it, a new level becomes known by a long
# stay or by repeated visits (which alert until then), so a recurring fault keeps alerting.

# R_LIVED: 1 once the level has been the current one (its scales are then its own);
# R_NORMAL: readings learned there in stays that began as normal switches (or that outlasted
# ``regime_lived`` readings); R_EPISODES: completed stays and runs of anomalous visits.
R_MU, R_SIG, R_DABS, R_SCALE2, R_MASS, R_SPREAD2, R_LIVED, R_NORMAL, R_EPISODES = range(9)
R_COLS = 9
# Mass of a slot that has never held a level (negative, so "mass >= 0" means "in use").
R_UNUSED = -1.0


@jit
def _regime_spread(reg: F64, j: int) -> float:
    return _max(reg[j, R_SIG], math.sqrt(reg[j, R_SPREAD2]))


@jit
def _regime_known(reg: F64, j: int, frequent: bool, fp: F64) -> bool:
    """Whether a return to level j is normal: the sensor has operated there for a long stay
    (``regime_lived`` readings learned in stays that began normally, or outlasted that), or
    keeps coming back to it (two completed episodes, ``regime_known`` readings in all). A
    level seen once for a while — a level-shift incident, even one during the warm-up, or
    accepted after ``adapt_after`` readings — is not yet a place the sensor operates at: the
    same fault recurring alerts again, while a load's set points (visited again and again)
    and a machine's running level (one long stay) are learned.

    A sensor that switches often (``frequent``: a learned rate above ``regime_frequent`` per
    reading, e.g. a load changing set point every few minutes) has shown that levels are its
    normal way of working: any level with ``regime_known`` readings counts for it."""
    if reg[j, R_NORMAL] >= fp[P_REGIME_LIVED]:
        return True
    enough: bool = reg[j, R_MASS] >= fp[P_REGIME_KNOWN]
    return enough and (frequent or reg[j, R_EPISODES] >= 2.0)


@jit
def _regime_nearest(
    reg: F64, cur: int, x: float, z_in: float, known: int, rel: float, level: float, fp: F64
) -> int:
    """The level other than ``cur`` (with ``known`` 1 / 2: known ones only, for a sensor that
    switches rarely / often) that explains ``x`` within ``z_in`` spreads — or, with ``rel`` > 0,
    within ``rel`` times its distance from the current ``level`` — nearest in those units; -1 if
    none."""
    best, best_d = -1, 1.0
    for j in range(reg.shape[0]):
        if j == cur or reg[j, R_MASS] < 0.0:
            continue
        if known > 0 and not _regime_known(reg, j, known == 2, fp):
            continue
        tol = _max(z_in * _regime_spread(reg, j), rel * abs(reg[j, R_MU] - level))
        if tol <= 0.0:
            continue
        d = abs(x - reg[j, R_MU]) / tol
        if d <= best_d:
            best, best_d = j, d
    return best


@jit
def _regime_open(reg: F64, cur: int, x: float, st: F64) -> int:
    """A slot for a new level at ``x``: an unused one, else the one of least mass (never the
    current level). Its scales start as the current level's."""
    j, least = -1, np.inf
    for k in range(reg.shape[0]):
        if k != cur and reg[k, R_MASS] < least:
            j, least = k, reg[k, R_MASS]
    reg[j, R_MU] = x
    reg[j, R_SIG] = st[SIG]
    reg[j, R_DABS] = st[DABS_L]
    reg[j, R_SCALE2] = st[SCALE2]
    reg[j, R_MASS] = 0.0
    reg[j, R_SPREAD2] = 0.0
    reg[j, R_LIVED] = 0.0
    reg[j, R_NORMAL] = 0.0
    reg[j, R_EPISODES] = 0.0
    return j


@jit
def _regime_save(reg: F64, st: F64, z_in: float) -> None:
    """Store the current level's live state in its slot (before leaving it). A remembered level
    the current one has meanwhile moved onto (within ``z_in`` spreads) is the same level seen
    twice — opened while the noise was still unknown, or by a shift accepted onto it — and
    is merged into it."""
    cur = int(st[REGIME])
    reg[cur, R_MU] = st[LEVEL]
    reg[cur, R_SIG] = st[SIG]
    reg[cur, R_DABS] = st[DABS_L]
    reg[cur, R_SCALE2] = st[SCALE2]
    reg[cur, R_SPREAD2] = 0.0
    reg[cur, R_LIVED] = 1.0
    reg[cur, R_EPISODES] += 1.0
    for j in range(reg.shape[0]):
        if j == cur or reg[j, R_MASS] < 0.0:
            continue
        spread = _min(_regime_spread(reg, j), _regime_spread(reg, cur))
        if abs(reg[j, R_MU] - reg[cur, R_MU]) <= z_in * spread:
            for col in (R_MASS, R_NORMAL, R_EPISODES):
                reg[cur, col] += reg[j, col]
            reg[j, R_MASS] = R_UNUSED


@jit
def _regime_switch(st: F64, lags: F64, reg: F64, j: int, z_in: float) -> None:
    """Leave the current level for level ``j``: translate the state, restore j's scales."""
    _regime_save(reg, st, z_in)
    # Where the recent values sat relative to the old level carries over, in units of each
    # level's own scale: the forecaster's normalised inputs are unchanged, so its forecast is
    # the same *shape* around the new level, sized by the new level's noise.
    old, new = st[LEVEL], reg[j, R_MU]
    ratio = math.sqrt(reg[j, R_SCALE2] / st[SCALE2]) if st[SCALE2] > 0.0 else 1.0
    st[LEVEL] = new
    st[MS] = new + (st[MS] - old) * ratio
    st[X_PREV] = new + (st[X_PREV] - old) * ratio
    for i in range(lags.shape[0]):
        lags[i] = new + (lags[i] - old) * ratio
    if st[DABS_L] > 0.0:
        # The short-window spread is relative to the level's own noise.
        st[DABS_S] *= reg[j, R_DABS] / st[DABS_L]
    st[SIG] = reg[j, R_SIG]
    st[DABS_L] = reg[j, R_DABS]
    st[SCALE2] = reg[j, R_SCALE2]
    st[REGIME] = float(j)
    st[SWITCHES] += 1.0
    st[STAY_ACCEPTED] = 0.0
    st[STAY_N] = 0.0


@jit
def _regime_target(st: F64, reg: F64, x: float, expected: float, sig: float, fp: F64) -> int:
    """The level a reading switches to, or -1 when it stays (see the section comment)."""
    z_in = fp[P_REGIME_Z]
    if st[NL] < fp[P_REGIME_MIN_NL] or abs(x - expected) <= z_in * sig:
        return -1
    cur = int(st[REGIME])
    # Operating levels are far apart compared with the spread *within* a level (a load's set
    # points, a machine on and off). A sensor whose values wander continuously (a daily cycle,
    # weather) has a within-level spread as wide as its range: its jumps are anomalies, and
    # it must never learn "levels" from snapshots of its cycle.
    # The first tens of readings are the exception: the within-level spread is not known yet,
    # and a jump learned then would inflate it for good (then no jump is ever "far"), so
    # early on a forecast miss alone opens a level; whatever it opens must still pass the
    # separation test before a switch to it is accepted later.
    early = st[NL] < 3 * fp[P_REGIME_MIN_NL] + 15
    # Before verdicts begin (as in ``_decide``) every reading is learned, so one the current
    # level cannot explain must open or join a level rather than widen this one's band.
    warm = st[NL] >= fp[P_WARMUP] and st[H_N] >= H_MIN_N
    known = 0
    if warm:
        known = 2 if st[SW_RATE] >= fp[P_REGIME_FREQUENT] else 1
    j = _regime_nearest(reg, cur, x, z_in, known, 0.0, 0.0, fp)
    # The target's own spread counts too (the smaller one): a level the sensor has lived at
    # is a clean measure of its within-level noise when the current level's scale has just
    # been inflated (by an incident, a drift).
    if j >= 0 and not early:
        spread2 = _min(st[SCALE2], reg[j, R_SCALE2]) if reg[j, R_LIVED] > 0.0 else st[SCALE2]
        if abs(reg[j, R_MU] - st[LEVEL]) <= fp[P_REGIME_SEP] * math.sqrt(spread2):
            j = -1
    if early and (j >= 0 or not warm):
        # A jump in the first readings was learned as spread before it could be recognised;
        # the levels on both sides of a recognised one start from the one-step noise instead.
        st[SCALE2] = _min(st[SCALE2], st[SIG] * st[SIG])
    if j < 0 and not warm:
        if not early and abs(x - st[LEVEL]) <= fp[P_REGIME_SEP] * math.sqrt(st[SCALE2]):
            return -1
        j = _regime_open(reg, cur, x, st)
    return j


@jit
def _regime_visit(reg: F64, st: F64, x: float, fp: F64) -> int:
    """Count an anomalous reading towards the level it is nearest to (running mean and
    variance), opening a tentative level at ``x`` when none is near.

    A level not yet lived in knows its noise only from these visits, so a visit also counts
    when it lies within a quarter of the way from that level to the current one: the first
    readings of a machine that has just started gather into one level instead of scattering
    into many that each hold a reading. Once three visits are in, the level's scales are
    taken from them (the noise of the new level, not a copy of the old one's).
    """
    cur = int(st[REGIME])
    j = _regime_nearest(reg, cur, x, fp[P_REGIME_Z], 0, 0.25, st[LEVEL], fp)
    if j < 0:
        j = _regime_open(reg, cur, x, st)
    m = reg[j, R_MASS] + 1.0
    d = x - reg[j, R_MU]
    reg[j, R_MU] += d / m
    reg[j, R_SPREAD2] += (d * (x - reg[j, R_MU]) - reg[j, R_SPREAD2]) / m
    reg[j, R_MASS] = m
    if reg[j, R_LIVED] == 0.0 and m >= 3.0:
        spread = math.sqrt(reg[j, R_SPREAD2])
        reg[j, R_SIG] = spread
        # A few visits under-estimate the long-run spread of a level with slow dynamics; the
        # scale (which only normalises) keeps the larger of theirs and the old level's.
        reg[j, R_SCALE2] = _max(reg[j, R_SCALE2], reg[j, R_SPREAD2])
        # E|x_t - x_{t-1}| of independent noise of sd s is 2 s / sqrt(pi).
        reg[j, R_DABS] = 1.1283791670955126 * spread
    return j


@jit
def _switch_surprise(st: F64, switched: bool, fp: F64) -> float:
    """Learn the sensor's switching rate; return the surprise (nats) of this reading's switch.

    A switch between known levels is normal, but not at any rate: a machine that starts and
    stops twice a day does not flick to its running level for one reading. A switch costs
    -log p (p = the learned switches per reading), and leaving the level just entered after
    h readings adds -log P(hold <= h) ~ -log(h p): a one-reading visit to the other level of a
    rarely switching sensor (a spike that happens to land on it) is as surprising as a large
    residual, while a load that switches every few minutes pays little."""
    # Until the EWMA has a window of history, a sensor that has not switched yet is credited
    # with one switch in the readings seen (a rate of 0 would make any first switch alarming).
    p = _clip(
        _max(st[SW_RATE], 1.0 / (_min(st[N], 1.0 / fp[P_REGIME_RATE_ALPHA]) + 2.0)), 1e-4, 0.5
    )
    nats = 0.0
    if switched:
        nats = -math.log(p) - math.log(_min(1.0, st[HOLD] * p))
        st[HOLD] = 1.0
    else:
        st[HOLD] += 1.0
    a = _max(fp[P_REGIME_RATE_ALPHA], 1.0 / (st[N] + 1.0))
    st[SW_RATE] += a * ((1.0 if switched else 0.0) - st[SW_RATE])
    return nats


@jit
def _regime_stay(reg: F64, st: F64, fp: F64) -> None:
    """A reading learned at the current level: it counts as operating there, unless the stay
    began by accepting an anomalous run — then only once it has lasted ``regime_lived``."""
    cur = int(st[REGIME])
    reg[cur, R_MASS] += 1.0
    st[STAY_N] += 1.0
    if st[STAY_ACCEPTED] == 0.0:
        reg[cur, R_NORMAL] += 1.0
    elif st[STAY_N] >= fp[P_REGIME_LIVED]:
        reg[cur, R_NORMAL] += st[STAY_N]
        st[STAY_ACCEPTED] = 0.0


@jit
def _regime_visits(reg: F64, st: F64, x: float, is_anom: bool, fp: F64) -> None:
    """Anomalous readings count towards the level they visit; a run of three or more visits to
    one level is one episode, counted when it ends (shorter runs are noise in an incident)."""
    visit = _regime_visit(reg, st, x, fp) if is_anom else -1
    last = int(st[LAST_VISIT])
    if last >= 0 and last != visit:
        if st[VISIT_RUN] >= 3.0:
            reg[last, R_EPISODES] += 1.0
        st[VISIT_RUN] = 0.0
    if visit >= 0:
        st[VISIT_RUN] += 1.0
    st[LAST_VISIT] = float(visit)


@jit
def _regime_decay(reg: F64, dt: float, fp: F64) -> None:
    f = math.exp(-dt / fp[P_REGIME_MEMORY_S])
    for j in range(reg.shape[0]):
        if reg[j, R_MASS] > 0.0:
            reg[j, R_MASS] *= f


# ---------------------------------------------------------------------- seasonal profile
#
# The day-ahead forecaster beside the one-step one. The AR forecaster above is built to predict
# the *next* reading well, which is what the detector needs; run freely for a day its path
# leans on a few Fourier terms and a level that keeps moving, and daily shapes that are not
# sinusoids (two demand peaks, a machine's on/off schedule) are beyond it. So every sensor also
# keeps, per time-of-day bin of the seasonal period, the mean deviation of its readings from a
# slow level (a Holt-Winters-style seasonal profile, updated with weight
# ``profile_weight`` per period), a flat alternative (the slow level alone) for sensors without
# a daily shape, and — the part a forecast's interval needs — the errors each of the two
# *actually made* a period ahead: every bin stores the forecast it made at its last visit, and
# the next visit measures it. Per sensor, the lower mean squared error picks the long-run
# forecast and online quantiles of its |error| are the long-run interval half-widths, so each
# sensor's interval is calibrated on its own errors rather than one curve for all. A request
# blends the AR path into this long-run forecast by the lag-1 autocorrelation of the deviations
# from it (``forecaster.blend_long_run``), serving the profile smoothed as far as its bins'
# roughness looks like noise (``Scorer.served_offsets``); the errors measured here are those of
# the bins as learned (measured on the smoothed forecast instead, the half-widths barely moved:
# ``docs/ml/README.md``). Where the AR path's one-step error (SIG) has grown beyond what "no
# change" errs (DABS_L: a level that wanders, or an AR path still finding its feet after an
# incident), a request starts from the last reading instead and carries its deviation from
# the long-run forecast forward at the deviations' measured rate
# (``Scorer._from_last_reading``). Nothing here feeds the detector.
#
# A sensor whose day has no shape is often a level that wanders and returns to a mean
# (barometric pressure, a controlled room). For it the kernel also keeps a long mean and the
# lag-1 and lag-2 autocovariances of the deviations from it; their ratio is how fast a deviation
# fades per reading, which measurement noise does not shorten (it does shorten the lag-1
# autocorrelation). A request for such a sensor returns from the AR path's first step to the
# long mean at that rate instead of handing over to the flat level, its band from the AR path's
# one-step band to the flat level's half-width (``Scorer._long_run``). "No shape" is decided in
# the request (``Scorer.serves_profile``): the flat level erred less a day ahead, or the bins
# show no shape, in which case the two errors are near equal and the lower one says little.
# (Made on the returning path's own day-ahead errors, the choice was worse on the training
# series: ``docs/ml/README.md``.) Here, the lower error alone picks what the deviations' rho is
# measured from.

PF_S, PF_W, PF_FS, PF_FF, PF_T = range(5)
PF_COLS = 5
# Day-ahead errors measured before the online quantiles take over from a Gaussian start.
PROFILE_Q_START = 20.0
_Z80, _Z95 = 1.2815515655446004, 1.959963984540054


@jit
def profile_bin(t: float, period: float, bins: int) -> int:
    return min(int((t % period) / period * bins), bins - 1)


@jit
def _quantile_step(q: float, err: float, p: float, eta: float) -> float:
    """Stochastic approximation of the p-quantile of ``err`` in the log domain: up by ``eta * p``
    after an exceedance, down by ``eta * (1 - p)`` otherwise, at rest where P(err > q) = 1 - p."""
    return q * math.exp(eta * ((1.0 if err > q else 0.0) - (1.0 - p)))


@jit
def _profile_errors(st: F64, e_s: float, e_f: float, a: float, eta: float) -> None:
    """Learn from one pair of day-ahead errors (seasonal, flat)."""
    n = st[PE_N] + 1.0
    a = _max(a, 1.0 / n)
    st[MSE_S] += a * (e_s * e_s - st[MSE_S])
    st[MSE_F] += a * (e_f * e_f - st[MSE_F])
    if n <= PROFILE_Q_START:
        # Too few errors for quantiles: the Gaussian ones of the mean squared error so far.
        rs, rf = math.sqrt(st[MSE_S]), math.sqrt(st[MSE_F])
        st[Q80_S], st[Q95_S], st[Q80_F], st[Q95_F] = _Z80 * rs, _Z95 * rs, _Z80 * rf, _Z95 * rf
    else:
        st[Q80_S] = _quantile_step(st[Q80_S], e_s, 0.8, eta)
        st[Q95_S] = _quantile_step(st[Q95_S], e_s, 0.95, eta)
        st[Q80_F] = _quantile_step(st[Q80_F], e_f, 0.8, eta)
        st[Q95_F] = _quantile_step(st[Q95_F], e_f, 0.95, eta)
    st[PE_N] = n


@jit
def _reverting_learn(st: F64, x: float, dt: float, typ: float, learn: bool, fp: F64) -> None:
    """The long mean (from normal readings) and the autocovariances of every in-order reading's
    deviation from it."""
    a = _max(1.0 - math.exp(-dt / fp[P_PROFILE_MEAN_TAU]), 1.0 / (st[N] + 1.0))
    d = x - st[RL]
    if dt <= 2.0 * typ:  # lag products only across consecutive readings, not a gap
        if not math.isnan(st[RV_P1]):
            st[RV_C1] += a * (d * st[RV_P1] - st[RV_C1])
        if not math.isnan(st[RV_P2]):
            st[RV_C2] += a * (d * st[RV_P2] - st[RV_C2])
        st[RV_P2] = st[RV_P1]
    else:
        st[RV_P2] = math.nan
    st[RV_P1] = d
    if learn:
        st[RL] += a * d


@jit
def _profile_learn(st: F64, prof: F64, t: float, x: float, dt: float, learn: bool, fp: F64) -> None:
    """One in-order reading (not the sensor's first): measure the forecasts this time of day made
    a period ago, track the deviations from the long-run forecast, learn the level and profile
    from a normal reading, and leave this bin's forecasts for a period ahead."""
    period, bins = fp[P_PERIOD_S], prof.shape[0]
    width = period / bins
    # A reading stands for its typical interval: at 1-minute readings 15 share a 15-minute bin
    # and each gets 1/15 of a visit's weight. Only the first reading of a visit finds the
    # forecast of a period ago (the others find their predecessor's), so errors come one per
    # visit, every max(width, typ) seconds.
    typ = math.exp(st[LOG_DT]) if st[DT_N] > 0 else width
    frac = _min(1.0, typ / width)
    row = prof[profile_bin(t, period, bins)]
    if 0.5 * period <= t - row[PF_T] <= 1.5 * period:
        e_s, e_f = abs(x - row[PF_FS]), abs(x - row[PF_FF])
        a_e = 1.0 - math.exp(-_max(width, typ) / fp[P_PROFILE_ERROR_TAU])
        _profile_errors(st, e_s, e_f, a_e, fp[P_PROFILE_Q_STEP])
    seasonal = st[PE_N] == 0 or st[MSE_S] <= st[MSE_F]
    r = x - (st[PL] + row[PF_S] if seasonal else st[FL])
    a_r = _max(1.0 - math.exp(-dt / fp[P_PROFILE_ERROR_TAU]), 1.0 / (st[N] + 1.0))
    st[PR_C0] += a_r * (r * r - st[PR_C0])
    if dt <= 2.0 * typ:  # the lag-1 product only across consecutive readings, not a gap
        st[PR_C1] += a_r * (r * st[PR_PREV] - st[PR_C1])
    st[PR_PREV] = r
    if learn:
        a_l = _max(1.0 - math.exp(-dt / fp[P_PROFILE_LEVEL_TAU]), 1.0 / (st[N] + 1.0))
        st[FL] += a_l * (x - st[FL])
        st[PL] += a_l * (x - row[PF_S] - st[PL])
        # Running mean over the first visits, then weight profile_weight per visit. From then
        # on (and once the sensor's day-ahead half-width is measured) one visit moves its bin
        # by at most profile_clip of that half-width, a Huber step: a maintenance drop or an
        # outage's ramp that the detector let through would otherwise be learned as the shape
        # of the day. The first visits stay unclipped: they find the bin's level.
        row[PF_W] += frac
        e = x - st[PL] - row[PF_S]
        cap = fp[P_PROFILE_CLIP] * st[Q80_S]
        mature = row[PF_W] * fp[P_PROFILE_WEIGHT] >= 1.0
        if mature and st[PE_N] > PROFILE_Q_START and cap > 0.0:
            e = _max(-cap, _min(cap, e))
        row[PF_S] += frac * _max(fp[P_PROFILE_WEIGHT], 1.0 / row[PF_W]) * e
    row[PF_FS] = st[PL] + row[PF_S]
    row[PF_FF] = st[FL]
    row[PF_T] = t
    _reverting_learn(st, x, dt, typ, learn, fp)


# ---------------------------------------------------------------------- value mixture
#
# Some sensors are best described not by where the last readings point but by which values
# they take: a load that changes set point between most readings (a compressor or heater
# sampled every 15 minutes) jumps so often that the forecaster's one-step band grows wider than
# the jumps, regime memory never sees a switch, and an incident inside that wide band goes
# unseen. So each sensor also keeps a small mixture of the values it takes — components with
# a mean, a spread and a weight, learned online (a reading within ``mixture_gate`` spreads of a
# component updates it, one further away opens a new one in place of the lightest) — and
# compares, on its normal readings, the mixture's log-likelihood with the forecast band's. A
# sensor the mixture explains better by ``mixture_margin`` nats per reading is judged by it:
# the residual detector's surprise becomes the reading's surprise under the mixture over its
# typical one, so a value between the set points, a shifted set point or a burst of noise
# alerts. For every sensor the forecast explains better (any sensor with a continuous signal,
# and a switching load sampled often enough for regime memory to follow it), nothing changes.
# Component spreads are floored at a within-level noise scale from the 10 % quantile of the
# sensor's nonzero |differences|, which lies among the pairs of readings at one level as long
# as enough are (see _QLOW_PER_SD), and capped at MIX_SPREAD_MAX times it.

MX_MU, MX_VAR, MX_W, MX_N = range(4)
MX_COLS = 4
_LN_SQRT_2PI = 0.9189385332046727
# The floor is q10 / _QLOW_PER_SD. When a quarter of successive pairs are at one level (a load
# choosing among four set points at random), q10 is the 40 % quantile of |x - x_prev| at one
# level, 0.74 noise sds, so the floor is about two sds: a component's own learned spread rules
# above it. More pairs at one level give a smaller floor, fewer a larger one. The quantile and
# the divisor were chosen on the tuning seeds at 1- and 15-minute readings (docs/ml/detection.md).
_QLOW_PER_SD = 0.3583
MIX_SPREAD_MAX = 2.0
# Floor of a component's learning rate: a component that settled between two levels early on
# moves onto its level within a few dozen of its readings.
MIX_LEARN_MIN = 0.05
# Largest per-reading log-likelihood difference counted when the two models are compared.
MIX_NATS_CAP = 10.0


@jit
def _mix_var(mix: F64, c: int, var_floor: float) -> float:
    """Component c's variance as scored. A component is a level: its spread stays within
    MIX_SPREAD_MAX within-level noise sds, so two levels absorbed into one component (before the
    noise estimate settled) do not make a blob that swallows every value between them; such a
    component loses its weight to the levels' own and is recycled."""
    return _min(_max(mix[c, MX_VAR], var_floor), MIX_SPREAD_MAX * MIX_SPREAD_MAX * var_floor)


@jit
def _mix_eval(mix: F64, x: float, var_floor: float) -> tuple[float, int, float]:
    """``(nats, nearest, z)``: -log density of x under the mixture, the nearest component (in its
    own spreads) and x's distance from it in those spreads."""
    dens = 0.0
    best, best_z = -1, np.inf
    for c in range(mix.shape[0]):
        if mix[c, MX_N] <= 0.0:
            continue
        var = _mix_var(mix, c, var_floor)
        z = (x - mix[c, MX_MU]) / math.sqrt(var)
        dens += mix[c, MX_W] * math.exp(-0.5 * z * z - _LN_SQRT_2PI) / math.sqrt(var)
        if abs(z) < abs(best_z):
            best, best_z = c, z
    return -math.log(_max(dens, 1e-300)), best, best_z


@jit
def _mix_mode(st: F64, fp: F64) -> bool:
    return bool(st[MX_LN] >= fp[P_WARMUP] and st[MX_LL] > fp[P_MIX_MARGIN])


@jit
def _mix_learn(
    st: F64, mix: F64, x: float, dx: float, learn: bool, nats: float, near: int, z: float,
    fc_nats: float, var_floor: float, fp: F64,
) -> None:  # fmt: skip
    """Learn from one in-order reading: the within-level noise from every nonzero difference,
    the components from a normal reading, and the weights from every reading that lands on a
    component (so a level the sensor keeps returning to becomes familiar, and a one-off value
    stays rare)."""
    adx = abs(dx)
    if adx > 0.0:
        if st[MX_QLOW] <= 0.0:
            st[MX_QLOW] = adx
        else:
            st[MX_QLOW] = _quantile_step(st[MX_QLOW], adx, 0.1, 0.1)
    a_w = fp[P_MIX_ALPHA]
    c = near
    new = near < 0 or abs(z) > fp[P_MIX_GATE]
    if new:
        # A value no component explains: it replaces the lightest one, as its first value even
        # if the reading was anomalous — then with no weight, so the value stays as surprising
        # as before until readings keep landing there (a new set point, accepted gradually).
        c = 0
        for j in range(1, mix.shape[0]):
            if mix[j, MX_W] < mix[c, MX_W]:
                c = j
        mix[c, MX_MU], mix[c, MX_VAR], mix[c, MX_N], mix[c, MX_W] = x, 0.0, 0.0, 0.0
    total = 0.0
    for j in range(mix.shape[0]):
        mix[j, MX_W] *= 1.0 - a_w
        total += mix[j, MX_W]
    if learn or not new:
        mix[c, MX_W] += a_w
        total += a_w
    for j in range(mix.shape[0]):
        mix[j, MX_W] /= total
    if learn or new:
        n = mix[c, MX_N] + 1.0
        a_c = _max(1.0 / n, MIX_LEARN_MIN)
        d = x - mix[c, MX_MU]
        mix[c, MX_MU] += a_c * d
        # Stored within the cap too, or a component that absorbed two levels while the noise
        # estimate was still settling would keep a blob's spread once it has.
        var = (1.0 - a_c) * (mix[c, MX_VAR] + a_c * d * d)
        mix[c, MX_VAR] = _min(var, MIX_SPREAD_MAX * MIX_SPREAD_MAX * var_floor)
        mix[c, MX_N] = n
    if learn and near >= 0 and st[NL] >= fp[P_WARMUP]:
        # Which model explains the sensor's normal readings better, and the mixture's typical
        # surprise, from the readings judged normal once the forecaster is past its warm-up.
        # Each reading's difference is capped: one reading far in either model's tail must not
        # decide for hundreds of readings.
        ln = st[MX_LN] + 1.0
        a = _max(1.0 / ln, a_w)
        st[MX_LL] += a * (_clip(fc_nats - nats, -MIX_NATS_CAP, MIX_NATS_CAP) - st[MX_LL])
        st[MX_NATS] += a * (nats - st[MX_NATS])
        st[MX_LN] = ln


# ---------------------------------------------------------------------- one reading


@jit
def _init_row(
    st: F64, lags: F64, theta: F64, cov: F64, reg: F64, prof: F64, mix: F64, t: float, x: float,
    prior: F64, fp: F64,
) -> None:  # fmt: skip
    st[:] = 0.0
    st[T_LAST] = t
    st[X_PREV] = x
    st[LEVEL] = x
    st[MS] = x
    st[QUANT] = np.inf
    st[IF_MU] = fp[P_IF_MEDIAN]
    st[IF_VAR] = fp[P_IF_VAR0]
    st[INFL] = 1.0
    st[VAR_S] = 1.0
    st[ALARM_RATE] = fp[P_Q_GAUSS]
    st[HOLD] = 1.0
    st[LAST_VISIT] = -1.0
    lags[:] = x
    theta[:] = prior
    _reset_cov(cov, fp[P_PRIOR_VAR])
    # One level in use, the sensor's first value; the current one (st[REGIME] = 0).
    reg[:, :] = 0.0
    reg[:, R_MASS] = R_UNUSED
    reg[0, R_MU] = x
    reg[0, R_MASS] = 0.0
    prof[:, :] = 0.0
    mix[:, :] = 0.0
    mix[0, MX_MU], mix[0, MX_W], mix[0, MX_N] = x, 1.0, 1.0
    st[PL] = x
    st[FL] = x
    st[RL] = x
    st[RV_P1] = st[RV_P2] = math.nan


@jit
def _features(
    st: F64, x: float, z_r: float, scale: float, sig: float, floor: float, gap: float,
    fp: F64, f: F64,
) -> tuple[float, float, float, float]:  # fmt: skip
    """The engineered features (see ``features.py``) into ``f``; returns the intermediates the
    learning step needs: ``(absdx, dabs_s, run, run_nats)``."""
    a_s = fp[P_SHORT_A]
    s_ref = _max(scale, sig)
    dx = x - st[X_PREV]
    absdx = abs(dx)
    dscale = _max(st[DABS_L] * SQRT_PI_2, floor) * math.sqrt(gap)
    dabs_s = (1.0 - a_s) * st[DABS_S] + a_s * absdx
    run = st[RUN] + 1.0 if dx == 0.0 else 0.0
    f[0] = (x - st[LEVEL]) / s_ref
    f[1] = z_r
    f[2] = (x - st[MS]) / s_ref
    f[3] = dx / dscale
    f[4] = math.log((dabs_s + floor) / (st[DABS_L] + floor))
    # Surprise of the current run of identical values under the sensor's learned rate of
    # exact repeats: -log P(run) = run * -log p_repeat. A continuous sensor (p ~ 0) is
    # suspicious after two repeats, an integer-quantised one only after a long run.
    run_nats = run * -math.log(_clip(st[RUN_TYP], 1e-3, 0.999))
    f[5] = run_nats
    c = fp[P_FEATURE_CLIP]
    for j in range(f.shape[0]):
        f[j] = _min(_max(f[j], -c), c)
    return absdx, dabs_s, run, run_nats


@jit
def _detect(
    st: F64, f: F64, z_r: float, nats: float, var_s: float, fp: F64, ip: I64,
    forest: tuple[I64, F64, I64, F64, I64], ref: F32, paths: I64, masses: F64,
    split_feat: I64, split_val: F64, det: F64, zz: F64,
) -> tuple[float, float]:  # fmt: skip
    """The three detectors' scores into ``det`` and statistics into ``zz``; returns the raw
    forest and half-space scores for calibration learning (``paths`` is left filled)."""
    slope = fp[P_SLOPE]
    # The forecaster's predictive distribution is a mixture: an exact repeat of the last value
    # with the sensor's learned repeat probability, else the Gaussian band. Its surprise is the
    # larger of the band's |z| and the repeat-run surprise as a z of equal tail probability
    # (sqrt(2 * nats); slightly conservative); the third term is the residual-variance test,
    # scaled so that its alarm level maps onto the residual's.
    z_res = _max(_max(abs(z_r), math.sqrt(2.0 * nats)), var_s * fp[P_Z_VAR])
    zz[0] = z_res
    det[0] = _sigmoid(slope * (z_res - fp[P_Z_RES]))
    if_raw = 0.0
    det[1] = 0.0
    zz[1] = 0.0
    if ip[I_HAS_FOREST]:
        feature, threshold, children, leaf_value, roots = forest
        if_raw = forest_score_row(
            f, feature, threshold, children, leaf_value, roots, ip[I_FOREST_DEPTH], fp[P_IF_NORM]
        )
        z_if = (if_raw - st[IF_MU]) / math.sqrt(_max(st[IF_VAR], fp[P_IF_VAR_FLOOR]))
        det[1] = _sigmoid(slope * (z_if - fp[P_Z_IF]))
        zz[1] = z_if
    hst_paths_row(f, split_feat, split_val, paths)
    h_raw = _hst_score(ref, paths, masses, fp[P_HST_LIMIT])
    z_h = (h_raw - st[H_MU]) / math.sqrt(_max(st[H_VAR], fp[P_H_VAR_FLOOR]))
    ready = st[HST_READY] > 0
    det[2] = _sigmoid(slope * (z_h - fp[P_Z_HST])) if ready else 0.0
    zz[2] = z_h if ready else 0.0
    return if_raw, h_raw


@jit
def _calibrate_residual(st: F64, live: bool, z_r: float, fp: F64) -> None:
    """Per-sensor false-alarm calibration of the residual detector.

    Some sensors are legitimately jumpy (a load switching between levels, a machine starting and
    stopping): their residuals are heavy-tailed and a Gaussian band flags every jump. Each
    sensor tracks, in the log domain by stochastic approximation, the |z| level that *onsets* of
    band exceedance (a reading above it after one below it) pass at a rate of ``max_alarm_rate``;
    sigma is inflated by that level over the Gaussian one. Counting onsets, not readings, means
    one long incident moves the calibration once, while a sensor that jumps every few minutes
    moves it every time.
    """
    q_gauss = fp[P_Q_GAUSS]
    z = abs(z_r) * st[INFL]  # undo the current inflation: track the raw statistic
    above = z > st[ALARM_RATE]
    onset = above and st[STREAK_N] == 0
    if live and (onset or not above):
        step = fp[P_ALARM_ALPHA] * ((1.0 if onset else 0.0) - fp[P_MAX_ALARM])
        st[ALARM_RATE] = _max(math.exp(math.log(st[ALARM_RATE]) + step), q_gauss)
    st[INFL] = _max(1.0, st[ALARM_RATE] / q_gauss)


@jit
def _learn_model(
    st: F64, theta: F64, cov: F64, x: float, phi: F64, scale: float, resid: float,
    sig0: float, absdx: float, run: float, fp: F64, ip: I64, p_phi: F64,
) -> None:  # fmt: skip
    """Learn the forecaster, scales and drift detector from a reading judged normal."""
    ln = st[NL] + 1.0
    first = st[SIG] == 0.0
    # Huber-style clipping: one wild reading during warm-up must not wreck the model.
    r_c = resid if first else _clip(resid, -4.0 * sig0, 4.0 * sig0)
    # err = target_u - pred_u, which for both d = 0 and d = 1 is the residual over scale. RLS
    # waits until the level and scale used to normalise are established; before that a
    # residual over a near-zero scale would throw the coefficients far off.
    if st[NL] >= 2 * theta.shape[0] + 5:
        err = _clip(r_c / scale, -5.0, 5.0)
        _rls_update(theta, cov, phi, err, fp[P_LAMBDA], fp[P_COV_MAX], p_phi)
        _stabilise(theta, ip[I_P])
    if first:
        st[SIG] = abs(resid) * SQRT_PI_2
    else:
        a_sig = _max(fp[P_RES_ALPHA], 1.0 / ln)
        st[SIG] = st[SIG] + a_sig * (abs(r_c) * SQRT_PI_2 - st[SIG])
    _drift(st, cov, resid, sig0, fp)
    a_l = _max(fp[P_LEVEL_ALPHA], 1.0 / ln)
    a_sc = _max(fp[P_SCALE_ALPHA], 1.0 / ln)
    dev = x - st[LEVEL]
    if 2 <= st[NL] < 3 * fp[P_REGIME_MIN_NL] + 15:
        # Huber-clipped in the first readings, where the regime memory cannot recognise a
        # switch yet (``_regime_target``): one jump learned then would inflate the scale for
        # hundreds of readings. Later, jumps are switches or anomalies and are not learned.
        lim = 3.0 * _max(math.sqrt(st[SCALE2]), sig0)
        dev = _clip(dev, -lim, lim)
    st[SCALE2] = st[SCALE2] + a_sc * (dev * dev - st[SCALE2])
    st[LEVEL] = st[LEVEL] + a_l * dev
    if st[N] > 0:
        a_d = _max(fp[P_SCALE_ALPHA], 1.0 / _max(st[NL], 1.0))
        st[DABS_L] = st[DABS_L] + a_d * (absdx - st[DABS_L])
        if absdx > 0:
            st[QUANT] = _min(st[QUANT], absdx)
        rep = 1.0 if run > 0 else 0.0
        st[RUN_TYP] = st[RUN_TYP] + a_d * (rep - st[RUN_TYP])
    st[NL] += 1.0


@jit
def _drift(st: F64, cov: F64, resid: float, sig0: float, fp: F64) -> None:
    """Two-sided CUSUM of standardised residuals of learned readings. When it fires the
    forecaster's coefficients have gone stale; resetting the covariance makes RLS relearn them
    within tens of readings instead of hundreds."""
    zc = _clip(resid / _max(sig0, 1e-300), -4.0, 4.0)
    gp = _max(0.0, st[CUSUM_P] + zc - fp[P_CUSUM_K])
    gn = _max(0.0, st[CUSUM_N] - zc - fp[P_CUSUM_K])
    if st[NL] >= fp[P_WARMUP] and (gp > fp[P_CUSUM_H] or gn > fp[P_CUSUM_H]):
        st[CUSUM_P] = 0.0
        st[CUSUM_N] = 0.0
        _reset_cov(cov, fp[P_PRIOR_VAR])
        st[DRIFTS] += 1.0
    else:
        st[CUSUM_P] = gp
        st[CUSUM_N] = gn


@jit
def _learn_detectors(
    st: F64, if_raw: float, h_raw: float, ref: F32, latest: F32, paths: I64, fp: F64
) -> None:
    """Per-sensor calibration of the tree detectors' raw scores (the forest's starting from the
    training prior) and the half-space trees' latest window."""
    if st[NL] > fp[P_WARM_HALF]:
        a_if = _max(fp[P_CALIB_ALPHA], 1.0 / (st[IF_N] + IF_PRIOR_N))
        d_if = if_raw - st[IF_MU]
        st[IF_MU] = st[IF_MU] + a_if * d_if
        st[IF_VAR] = (1 - a_if) * (st[IF_VAR] + a_if * d_if * d_if)
        st[IF_N] += 1.0
    if st[HST_READY] > 0:
        a_h = _max(fp[P_CALIB_ALPHA], 1.0 / (st[H_N] + 1.0))
        d_h = h_raw - st[H_MU]
        st[H_MU] = st[H_MU] + a_h * d_h
        st[H_VAR] = (1 - a_h) * (st[H_VAR] + a_h * d_h * d_h)
        st[H_N] += 1.0
    _hst_learn(latest, paths)
    st[HST_COUNT] += 1.0
    if st[HST_COUNT] >= fp[P_HST_WINDOW]:
        ref[:, :] = latest
        latest[:, :] = 0.0
        st[HST_COUNT] = 0.0
        st[HST_READY] = 1.0


@jit
def _follow(
    st: F64, lags: F64, t: float, x: float, cleaned: float, dabs_s: float, run: float, fp: F64
) -> None:
    """Raw, unconditional state of an in-order reading: what the last readings looked like."""
    for i in range(lags.shape[0] - 1, 0, -1):
        lags[i] = lags[i - 1]
    lags[0] = cleaned
    st[MS] = st[MS] + fp[P_SHORT_A] * (cleaned - st[MS])
    st[X_PREV] = x
    st[DABS_S] = dabs_s
    st[RUN] = run
    st[T_LAST] = t
    st[N] += 1.0


@jit
def _adapt(
    st: F64, lags: F64, reg: F64, act: bool, late: bool, dev: float, x: float, absdx: float,
    fp: F64,
) -> None:  # fmt: skip
    """Accept a persistent change as the new normal instead of alerting forever.

    Parameters learn from normal readings only, so a sensor whose level (or noise) moves for
    good would otherwise be anomalous forever. A run of ``adapt_after`` consecutive anomalous
    readings whose deviations from the level are consistent (|mean| >= adapt_consistency * sd:
    a level shift, not a noise burst) — or any anomalous run three times that long (a lasting
    change of regime) — is accepted: the level, short mean and forecaster lags re-anchor on the
    new values, and the residual sigma, scale and typical |difference| are raised to what the
    run showed if it was noisier than the old normal.
    """
    if act:
        st[STREAK_N] += 1.0
        st[STREAK_S1] += dev
        st[STREAK_S2] += dev * dev
        st[STREAK_D] += absdx
    elif not late:
        st[STREAK_N] = st[STREAK_S1] = st[STREAK_S2] = st[STREAK_D] = 0.0
    n = _max(st[STREAK_N], 1.0)
    mean = st[STREAK_S1] / n
    sd = math.sqrt(_max(st[STREAK_S2] / n - mean * mean, 0.0))
    consistent = abs(mean) >= fp[P_ADAPT_CONS] * sd
    after = fp[P_ADAPT_AFTER]
    if not ((st[STREAK_N] >= after and consistent) or st[STREAK_N] >= 3 * after):
        return
    # The old level is remembered as it was; the accepted one continues the level the anomalous
    # readings were counted towards (``_regime_visit``), or a new one.
    _regime_save(reg, st, fp[P_REGIME_Z])
    st[LEVEL] += mean
    st[MS] += mean
    delta = x - lags[0]
    lags += delta
    st[SIG] = _max(st[SIG], sd)
    st[SCALE2] = _max(st[SCALE2], sd * sd)
    st[DABS_L] = _max(st[DABS_L], st[STREAK_D] / n)
    for col in (STREAK_N, STREAK_S1, STREAK_S2, STREAK_D, CUSUM_P, CUSUM_N):
        st[col] = 0.0
    st[SHIFTS] += 1.0
    cur = int(st[REGIME])
    j = _regime_nearest(reg, cur, st[LEVEL], fp[P_REGIME_Z], 0, 0.25, st[LEVEL] - mean, fp)
    if j < 0:
        j = _regime_open(reg, cur, st[LEVEL], st)
    st[REGIME] = float(j)
    # The anomalous visits go on as a stay at j, one that began with an anomaly (see
    # ``_regime_known``); it is not a separate episode.
    st[LAST_VISIT] = -1.0
    st[VISIT_RUN] = 0.0
    st[STAY_ACCEPTED] = 1.0
    st[STAY_N] = 0.0


# Rows of ``run_batch``'s ``vals`` (float) and ``flags`` (bool) outputs, one column per reading
# (so each output is a contiguous row).
V_SCORE, V_EXPECTED, V_SIGMA = range(3)
B_ANOMALY, B_WARM, B_HISTORY, B_LEARNED = range(4)


@jit
def _forecast(
    st: F64, lags: F64, theta: F64, t: float, phi: F64, fp: F64, ip: I64
) -> tuple[float, float, float]:  # fmt: skip
    """One-step forecast of the sensor: ``(expected, scale, floor)``; ``phi`` is filled."""
    level = st[LEVEL]
    quant = st[QUANT] if math.isfinite(st[QUANT]) else 0.0
    floor = _max(0.5 * quant, 1e-9 * abs(level) + 1e-12)
    scale = _max(math.sqrt(st[SCALE2]), floor)
    _regressors(phi, lags, level, scale, t, ip, fp[P_PERIOD_S])
    pred = 0.0
    for i in range(phi.shape[0]):
        pred += phi[i] * theta[i]
    # A forecast more than 20 long-run scales from the level is never credible (a model still
    # settling, or one gone wrong): fall back towards the level.
    pred_u = _clip(pred, -20.0, 20.0)
    base = level if ip[I_D] == 0 else lags[0]
    return base + scale * pred_u, scale, floor


@jit
def _gap(st: F64, dt: float, fp: F64) -> float:
    """The reading's gap in typical intervals (1 when none is known), capped."""
    gap = 1.0
    if st[DT_N] > 0 and dt > 0:
        gap = dt / math.exp(st[LOG_DT])
    return _clip(gap, 1.0, fp[P_GAP_CAP])


@jit
def _decide(st: F64, det: F64, has_history: bool, fp: F64) -> tuple[float, bool, bool]:
    """``(score, warm, is_anomaly)``: the weighted maximum of the detectors once warm."""
    warm = st[NL] >= fp[P_WARMUP] and st[H_N] >= H_MIN_N
    # No verdict during warm-up: the detectors are not calibrated yet, so the ensemble score is
    # reported as 0 (the per-detector scores stay visible for diagnosis).
    score = 0.0
    if warm:
        score = _max(_max(det[0] * fp[P_W_RES], det[1] * fp[P_W_IF]), det[2] * fp[P_W_HST])
    return score, warm, warm and score >= fp[P_THRESHOLD] and has_history


@jit
def _step(
    i: int, s: int, t: float, x: float, state: F64, lags: F64, theta: F64, cov: F64,
    hst_ref: F32, hst_latest: F32, regimes: F64, profile: F64, mixture: F64, prior: F64, fp: F64,
    ip: I64,
    forest: tuple[I64, F64, I64, F64, I64], hst: tuple[I64, F64],
    scratch: tuple[F64, F64, I64, F64],
    vals: F64, flags: B, det: F64, zz: F64, feats: F64,
) -> None:  # fmt: skip
    """Score reading ``i`` (sensor row ``s``) against its sensor's state, then learn from it."""
    st, lg, th, cv, reg = state[s], lags[s], theta[s], cov[s], regimes[s]
    prof, mix = profile[s], mixture[s]
    phi, p_phi, paths, masses = scratch
    has_history = st[N] != 0
    if not has_history:
        _init_row(st, lg, th, cv, reg, prof, mix, t, x, prior, fp)
    dt = t - st[T_LAST]
    late = dt < 0
    gap = _gap(st, dt, fp)
    band_mult = math.sqrt(gap) if gap > fp[P_GAP_FACTOR] else 1.0
    expected, scale, floor = _forecast(st, lg, th, t, phi, fp, ip)
    sig0 = _max(st[SIG], floor)
    sig = sig0 * band_mult * st[INFL]
    sw_nats = 0.0
    if not late and has_history:
        if dt > 0:
            _regime_decay(reg, dt, fp)
        # Judged against the level's own noise: the false-alarm inflation (INFL) exists for
        # jumps the regime memory cannot explain, and must not hide the ones it can.
        j = _regime_target(st, reg, x, expected, sig0 * band_mult, fp)
        if j >= 0:
            # A switch to a level the sensor has operated at: judge the reading as a
            # continuation of that level (see the regime memory section).
            _regime_switch(st, lg, reg, j, fp[P_REGIME_Z])
            expected, scale, floor = _forecast(st, lg, th, t, phi, fp, ip)
            sig0 = _max(st[SIG], floor)
            sig = sig0 * band_mult * st[INFL]
        sw_nats = _switch_surprise(st, j >= 0, fp)
    resid = x - expected
    z_r = resid / sig
    # The value mixture's view of the reading; a sensor it explains better is judged by it.
    sw = st[MX_QLOW] / _QLOW_PER_SD if st[MX_QLOW] > 0.0 else 1e-9 * (abs(x) + 1.0)
    mix_nats, near, z_near = _mix_eval(mix, x, sw * sw)
    z_det = z_r
    # What the reading is reported against: the forecast band, or for a sensor judged by its
    # values the nearest of them (a level and its spread), so an alert says which set point
    # the value missed and by how much.
    shown, shown_sig = expected, sig
    if _mix_mode(st, fp):
        z_det = math.sqrt(2.0 * _max(mix_nats - st[MX_NATS], 0.0))
        if near >= 0:
            shown, shown_sig = mix[near, MX_MU], math.sqrt(_mix_var(mix, near, sw * sw))
    f = feats[i]
    absdx, dabs_s, run, run_nats = _features(st, x, z_r, scale, sig, floor, gap, fp, f)
    # Short-window variance test on the residuals: EWMA of z^2 (each term capped at var_cap, so
    # one outlier cannot trigger it). Several large residuals in a row — a noise burst whose
    # single readings may each stay inside the band — push it up.
    var_s = st[VAR_S] + fp[P_VAR_ALPHA] * (_min(z_det * z_det, fp[P_VAR_CAP]) - st[VAR_S])
    if not late:
        st[VAR_S] = var_s
    ref, latest = hst_ref[s], hst_latest[s]
    if_raw, h_raw = _detect(
        st, f, z_det, _max(run_nats, sw_nats * fp[P_SWITCH_NATS_SCALE]), var_s, fp, ip, forest,
        ref, paths, masses, hst[0], hst[1],
        det[i], zz[i],
    )  # fmt: skip
    score, warm, is_anom = _decide(st, det[i], has_history, fp)
    learn = not is_anom and not late
    _calibrate_residual(st, not late and st[NL] >= 30, z_r, fp)
    dev = x - st[LEVEL]
    if not late and dt > 0:
        # Timing is learned from every in-order reading: an anomalous value still arrived.
        a_dt = _max(0.05, 1.0 / (st[DT_N] + 1.0))
        st[LOG_DT] = st[LOG_DT] + a_dt * (math.log(_max(dt, 1e-6)) - st[LOG_DT])
        st[DT_N] += 1.0
    if learn:
        _learn_model(st, th, cv, x, phi, scale, resid, sig0, absdx, run, fp, ip, p_phi)
        _learn_detectors(st, if_raw, h_raw, ref, latest, paths, fp)
        _regime_stay(reg, st, fp)
    if not late:
        _regime_visits(reg, st, x, is_anom, fp)
        if has_history:
            _profile_learn(st, prof, t, x, dt, learn, fp)
            fc_nats = 0.5 * z_r * z_r + math.log(sig) + _LN_SQRT_2PI
            _mix_learn(
                st, mix, x, x - st[X_PREV], learn, mix_nats, near, z_near, fc_nats, sw * sw, fp
            )
    if not late:
        # State follows every reading, an anomalous one only through a winsorised copy: an
        # outlier moves it by at most clean_z sigmas, while a persistent change is still
        # followed within a few readings and the free-running forecast can never run away
        # from the data (parameters, by contrast, learn from normal readings only).
        lim = fp[P_CLEAN_Z] * sig
        cleaned = x if learn else _clip(x, expected - lim, expected + lim)
        _follow(st, lg, t, x, cleaned, dabs_s, run, fp)
    _adapt(st, lg, reg, is_anom and not late, late, dev, x, absdx, fp)
    vals[V_SCORE, i], vals[V_EXPECTED, i], vals[V_SIGMA, i] = score, shown, shown_sig
    flags[B_ANOMALY, i], flags[B_WARM, i] = is_anom, warm
    flags[B_HISTORY, i], flags[B_LEARNED, i] = has_history, learn


@jit
def run_batch(
    slots: I64, t: F64, x: F64, state: F64, lags: F64, theta: F64, cov: F64,
    hst_ref: F32, hst_latest: F32, regimes: F64, profile: F64, mixture: F64, prior: F64, fp: F64,
    ip: I64,
    forest: tuple[I64, F64, I64, F64, I64], hst: tuple[I64, F64],
    vals: F64, flags: B, det: F64, zz: F64, feats: F64,
) -> None:  # fmt: skip
    """Score and learn every reading of a batch in order, each against its own sensor's row.

    ``slots[i]`` is reading i's row in the state arrays (allocated by the caller). Outputs go
    to column i of ``vals`` (score, expected, sigma) and ``flags`` (is_anomaly, warm,
    has_history, learned), and to row i of ``det`` / ``zz`` (per-detector scores / statistics)
    and ``feats``.
    """
    k, trees, height = theta.shape[1], hst[0].shape[0], ip[I_HST_HEIGHT]
    scratch = (
        np.empty(k),
        np.empty(k),
        np.empty((trees, height + 1), dtype=np.int64),
        np.empty((trees, height + 1)),
    )
    for i in range(slots.shape[0]):
        _step(
            i, slots[i], t[i], x[i], state, lags, theta, cov, hst_ref, hst_latest, regimes,
            profile, mixture, prior, fp, ip, forest, hst, scratch, vals, flags, det, zz, feats,
        )  # fmt: skip
