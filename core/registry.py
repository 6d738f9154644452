"""The model registry: which version of each model is active, and loading and managing it safely.

Layout of ``models/``::

    active.json                       {"anomaly_detector": 1, "forecaster": 1}  (loaders read it)
    shadow.json                       {"anomaly_detector": 2}  candidates running in shadow
    history.json                      activation stacks per model + an append-only event log
    shadow_stats.json                 agreement / quality figures of each shadow run (scorer writes)
    <name>_v<N>.joblib                the artifact
    <name>_v<N>.meta.json             trained_at, data window, features, parameters, metrics,
                                      library versions, sha256 of the artifact

Loading verifies the checksum before unpickling (a joblib file is code: never load one whose bytes
we did not write) and checks the artifact's feature list against what the caller expects.

Every change to the registry files is written to a temporary file and renamed into place, under an
exclusive lock, so a loader never reads half a file and two ``sensorpipe models`` commands cannot
interleave their read-modify-write cycles.

The safe path from retraining to production::

    save_version(...)            -> v2 exists, nothing uses it
    set_shadow("m", 2)           -> the scorer runs v2 beside the active v1, never alerting from it,
                                    and reports agreement / error figures with record_shadow_stats
    promote("m")                 -> v2 becomes active if the figures hold (PromotionCriteria)
    rollback("m")                -> back to v1 if production disagrees
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import platform
import re
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from core.errors import ModelError

log = logging.getLogger(__name__)

ACTIVE_FILE = "active.json"
SHADOW_FILE = "shadow.json"
HISTORY_FILE = "history.json"
SHADOW_STATS_FILE = "shadow_stats.json"
LOCK_FILE = ".registry.lock"
# Registry files are read by services that may run as another user than the trainer.
FILE_MODE = 0o644

# Model names become file names: keep them to a safe alphabet (no path separators, no dots).
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_ARTIFACT_RE = re.compile(r"^(?P<name>[a-z][a-z0-9_]{0,63})_v(?P<version>[1-9][0-9]*)\.meta\.json$")

# Distribution names whose versions are recorded in every meta.json: a model pickled by one
# version of scikit-learn is not guaranteed to load, or to score the same, under another.
LIBRARIES = ("scikit-learn", "numpy", "scipy", "river", "statsmodels", "joblib")

# Keys a caller must give save_version; the registry adds sha256, versions and bookkeeping.
REQUIRED_META = ("data_window", "features", "parameters", "metrics")


@dataclass(frozen=True, slots=True)
class LoadedModel:
    name: str
    version: int
    model: Any
    meta: dict[str, Any]

    @property
    def tag(self) -> str:
        """The ``model_version`` carried by alerts and API answers, e.g. ``forecaster:v1``."""
        return f"{self.name}:v{self.version}"


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """One stored version, as ``sensorpipe models list`` shows it."""

    name: str
    version: int
    trained_at: str | None
    active: bool
    shadow: bool
    metrics: dict[str, Any]
    size_bytes: int | None


@dataclass(frozen=True, slots=True)
class VerifyResult:
    name: str
    version: int
    ok: bool
    reason: str  # "ok" or a ModelError reason code
    detail: str


@dataclass(frozen=True, slots=True)
class ShadowStats:
    """What a shadow run measured: written by the scorer, read by ``promote``.

    ``agreement`` is the share of scored readings on which the candidate's decision (anomaly or
    not) equals the active model's; ``active_error`` / ``candidate_error`` are the mean absolute
    one-step errors of forecasters on the same readings. A figure a model kind does not have is
    ``None`` and is not checked.
    """

    version: int
    n_scored: int
    agreement: float | None = None
    active_error: float | None = None
    candidate_error: float | None = None
    candidate_alerts: int | None = None
    active_alerts: int | None = None
    updated_at: str = field(default_factory=lambda: _now_iso())


@dataclass(frozen=True, slots=True)
class PromotionCriteria:
    """When a shadow candidate may replace the active version."""

    min_scored: int = 1000
    min_agreement: float = 0.95
    # The candidate's forecast error may exceed the active model's by at most this factor.
    max_error_ratio: float = 1.0


# --- paths and small helpers --------------------------------------------------------------------


def default_models_dir() -> Path:
    """``./models`` when it exists, else the ``models/`` committed beside the code.

    So ``sensorpipe backtest`` run from any folder of a checkout still finds the trained models.
    """
    here = Path("models")
    if (here / ACTIVE_FILE).exists():
        return here
    shipped = Path(__file__).resolve().parents[1] / "models"
    return shipped if (shipped / ACTIVE_FILE).exists() else here


def artifact_path(models_dir: Path, name: str, version: int) -> Path:
    return models_dir / f"{name}_v{version}.joblib"


def meta_path(models_dir: Path, name: str, version: int) -> Path:
    return models_dir / f"{name}_v{version}.meta.json"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _check_name(name: str) -> None:
    if not _NAME_RE.match(name):
        raise ModelError("invalid_name", f"model name {name!r} must match {_NAME_RE.pattern}")


def library_versions() -> dict[str, str]:
    """Versions of the libraries an artifact depends on, plus the Python version."""
    out = {"python": platform.python_version()}
    for dist in LIBRARIES:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "absent"
    return out


def _write_json_atomic(path: Path, doc: Any) -> None:
    """Write ``doc`` so a concurrent reader sees the old file or the new one, never a mix."""
    text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default
    except ValueError as exc:
        raise ModelError("corrupt", f"{path} is not valid JSON: {exc}") from exc


@contextlib.contextmanager
def _locked(models_dir: Path) -> Iterator[None]:
    """Exclusive lock around a read-modify-write of the registry files."""
    models_dir.mkdir(parents=True, exist_ok=True)
    with (models_dir / LOCK_FILE).open("a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _read_version_map(path: Path) -> dict[str, int]:
    doc = _read_json(path, None)
    if doc is None:
        raise ModelError("missing", f"{path} does not exist")
    if not isinstance(doc, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in doc.values()
    ):
        raise ModelError("corrupt", f"{path} must map model names to integer versions")
    return {str(k): int(v) for k, v in doc.items()}


# --- loading ------------------------------------------------------------------------------------


def read_active(models_dir: Path) -> dict[str, int]:
    return _read_version_map(Path(models_dir) / ACTIVE_FILE)


def read_shadow(models_dir: Path) -> dict[str, int]:
    path = Path(models_dir) / SHADOW_FILE
    return _read_version_map(path) if path.exists() else {}


def read_meta(models_dir: Path, name: str, version: int) -> dict[str, Any]:
    path = meta_path(models_dir, name, version)
    meta = _read_json(path, None)
    if meta is None:
        raise ModelError("missing", f"{path} does not exist")
    if not isinstance(meta, dict):
        raise ModelError("corrupt", f"{path} is not a JSON object")
    return meta


def _verify_artifact(models_dir: Path, name: str, version: int) -> dict[str, Any]:
    """The version's meta after checking that its artifact's bytes are the ones we wrote."""
    meta = read_meta(models_dir, name, version)
    path = artifact_path(models_dir, name, version)
    if not path.exists():
        raise ModelError("missing", f"{path} does not exist")
    actual = sha256_file(path)
    if actual != meta.get("sha256"):
        raise ModelError(
            "checksum_mismatch", f"{path} sha256 {actual[:12]}… does not match its meta.json"
        )
    return meta


def load_version(
    models_dir: Path | str, name: str, version: int, expected_features: list[str] | None = None
) -> LoadedModel:
    """Load one version after verifying its checksum and (optionally) its feature list."""
    import joblib  # heavy import, only where a model is really loaded

    models_dir = Path(models_dir)
    _check_name(name)
    meta = _verify_artifact(models_dir, name, version)
    if expected_features is not None and meta.get("features") != expected_features:
        raise ModelError(
            "incompatible",
            f"{name} v{version} was trained on features {meta.get('features')}, "
            f"this code computes {expected_features}",
        )
    path = artifact_path(models_dir, name, version)
    try:
        model = joblib.load(path)
    except Exception as exc:  # unpickling can fail in many library-specific ways
        raise ModelError("corrupt", f"{path} cannot be loaded: {exc}") from exc
    log.info("loaded model %s v%d", name, version)
    return LoadedModel(name, version, model, meta)


def load_active(
    models_dir: Path | str, name: str, expected_features: list[str] | None = None
) -> LoadedModel:
    models_dir = Path(models_dir)
    active = read_active(models_dir)
    if name not in active:
        raise ModelError("missing", f"no active version of {name} in {models_dir / ACTIVE_FILE}")
    return load_version(models_dir, name, active[name], expected_features)


def load_shadow(
    models_dir: Path | str, name: str, expected_features: list[str] | None = None
) -> LoadedModel | None:
    """The candidate running in shadow for ``name``, or None when there is none.

    A shadow that cannot be loaded raises ModelError like an active one would: the caller (the
    scorer) decides to log it and run without a shadow, since a shadow never affects alerts.
    """
    models_dir = Path(models_dir)
    version = read_shadow(models_dir).get(name)
    if version is None:
        return None
    return load_version(models_dir, name, version, expected_features)


# --- writing versions ---------------------------------------------------------------------------


def stored_versions(models_dir: Path | str, name: str | None = None) -> list[tuple[str, int]]:
    """(name, version) of every meta.json in the directory, sorted."""
    models_dir = Path(models_dir)
    found: list[tuple[str, int]] = []
    if not models_dir.is_dir():
        return found
    for p in models_dir.iterdir():
        m = _ARTIFACT_RE.match(p.name)
        if m and (name is None or m["name"] == name):
            found.append((m["name"], int(m["version"])))
    return sorted(found)


def next_version(models_dir: Path | str, name: str) -> int:
    models_dir = Path(models_dir)
    versions = [v for _, v in stored_versions(models_dir, name)]
    # An orphan artifact without meta (an interrupted save) still reserves its number.
    versions += [
        int(p.name[len(name) + 2 : -len(".joblib")])
        for p in models_dir.glob(f"{name}_v*.joblib")
        if p.name[len(name) + 2 : -len(".joblib")].isdigit()
    ]
    return max(versions, default=0) + 1


def save_version(models_dir: Path | str, name: str, model: Any, meta: dict[str, Any]) -> int:
    """Store ``model`` as the next version of ``name``; returns the version number.

    ``meta`` must hold ``data_window``, ``features`` (None for models without a feature vector),
    ``parameters`` and ``metrics``; ``trained_at`` defaults to now. The registry adds ``name``,
    ``version``, ``library_versions``, ``sha256`` and ``size_bytes``. Nothing is activated.
    """
    import joblib

    models_dir = Path(models_dir)
    _check_name(name)
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise ModelError("invalid_meta", f"meta for {name} lacks {', '.join(missing)}")
    with _locked(models_dir):
        version = next_version(models_dir, name)
        path = artifact_path(models_dir, name, version)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=models_dir)
        os.fchmod(fd, FILE_MODE)
        os.close(fd)
        try:
            joblib.dump(model, tmp, compress=3)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        full = {
            "name": name,
            "version": version,
            "trained_at": meta.get("trained_at") or _now_iso(),
            **{k: v for k, v in meta.items() if k != "trained_at"},
            "library_versions": library_versions(),
            "sha256": sha256_file(path),
            "size_bytes": path.stat().st_size,
        }
        _write_json_atomic(meta_path(models_dir, name, version), full)
    log.info("saved model %s v%d (%d bytes)", name, version, full["size_bytes"])
    return version


# --- activation, history, rollback --------------------------------------------------------------


def _read_history(models_dir: Path) -> dict[str, Any]:
    doc = _read_json(models_dir / HISTORY_FILE, {"stacks": {}, "events": []})
    if not isinstance(doc, dict) or not isinstance(doc.get("stacks"), dict):
        raise ModelError("corrupt", f"{models_dir / HISTORY_FILE} has an unexpected shape")
    doc.setdefault("events", [])
    return doc


def _record(
    history: dict[str, Any], action: str, name: str, version: int | None, previous: int | None
) -> None:
    history["events"].append(
        {"at": _now_iso(), "action": action, "name": name, "version": version, "previous": previous}
    )


def _set_active(models_dir: Path, name: str, version: int, action: str) -> int | None:
    """Point ``name`` at ``version`` (already verified); returns the previous version."""
    path = models_dir / ACTIVE_FILE
    active = _read_version_map(path) if path.exists() else {}
    previous = active.get(name)
    history = _read_history(models_dir)
    stack: list[int] = history["stacks"].setdefault(name, [])
    # active.json may have been edited by hand: make sure the version we leave is on the stack.
    if previous is not None and (not stack or stack[-1] != previous):
        stack.append(previous)
    if action == "rollback":
        stack.pop()
    elif not stack or stack[-1] != version:
        stack.append(version)
    active[name] = version
    _record(history, action, name, version, previous)
    _write_json_atomic(path, dict(sorted(active.items())))
    _write_json_atomic(models_dir / HISTORY_FILE, history)
    return previous


def activate(models_dir: Path | str, name: str, version: int) -> int | None:
    """Make ``version`` the active one, after verifying it; returns the previous active version."""
    models_dir = Path(models_dir)
    _check_name(name)
    with _locked(models_dir):
        _verify_artifact(models_dir, name, version)
        previous = _set_active(models_dir, name, version, "activate")
        shadow = read_shadow(models_dir)
        if shadow.get(name) == version:  # a version cannot shadow itself
            del shadow[name]
            _write_json_atomic(models_dir / SHADOW_FILE, shadow)
    log.info("activated %s v%d (was %s)", name, version, previous)
    return previous


def rollback(models_dir: Path | str, name: str) -> int:
    """Re-activate the version that was active before the current one; returns it."""
    models_dir = Path(models_dir)
    _check_name(name)
    with _locked(models_dir):
        current = read_active(models_dir).get(name)
        if current is None:
            raise ModelError("missing", f"{name} has no active version to roll back from")
        stack: list[int] = list(_read_history(models_dir)["stacks"].get(name, []))
        if not stack or stack[-1] != current:
            stack.append(current)
        if len(stack) < 2:
            raise ModelError("no_previous", f"{name} v{current} has no earlier active version")
        target = int(stack[-2])
        _verify_artifact(models_dir, name, target)
        _set_active(models_dir, name, target, "rollback")
    log.info("rolled back %s from v%d to v%d", name, current, target)
    return target


def history(models_dir: Path | str, name: str | None = None) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = _read_history(Path(models_dir))["events"]
    return [e for e in events if name is None or e.get("name") == name]


# --- shadow and promotion -----------------------------------------------------------------------


def set_shadow(models_dir: Path | str, name: str, version: int) -> None:
    """Run ``version`` of ``name`` in shadow beside the active version (resets its figures)."""
    models_dir = Path(models_dir)
    _check_name(name)
    with _locked(models_dir):
        _verify_artifact(models_dir, name, version)
        if read_active(models_dir).get(name) == version:
            raise ModelError("invalid_shadow", f"{name} v{version} is already the active version")
        shadow = read_shadow(models_dir)
        shadow[name] = version
        _write_json_atomic(models_dir / SHADOW_FILE, dict(sorted(shadow.items())))
        stats = _read_json(models_dir / SHADOW_STATS_FILE, {})
        stats.pop(name, None)
        _write_json_atomic(models_dir / SHADOW_STATS_FILE, stats)
        history_doc = _read_history(models_dir)
        _record(history_doc, "shadow", name, version, None)
        _write_json_atomic(models_dir / HISTORY_FILE, history_doc)
    log.info("shadowing %s v%d", name, version)


def clear_shadow(models_dir: Path | str, name: str) -> int | None:
    """Stop the shadow run of ``name``; returns the version that was shadowing, if any."""
    models_dir = Path(models_dir)
    with _locked(models_dir):
        shadow = read_shadow(models_dir)
        version = shadow.pop(name, None)
        _write_json_atomic(models_dir / SHADOW_FILE, shadow)
    return version


def record_shadow_stats(models_dir: Path | str, name: str, stats: ShadowStats) -> None:
    """Store the figures of the running shadow (called by the scorer, e.g. once a minute)."""
    models_dir = Path(models_dir)
    with _locked(models_dir):
        if read_shadow(models_dir).get(name) != stats.version:
            raise ModelError(
                "invalid_shadow", f"{name} v{stats.version} is not the version in shadow"
            )
        doc = _read_json(models_dir / SHADOW_STATS_FILE, {})
        doc[name] = asdict(stats)
        _write_json_atomic(models_dir / SHADOW_STATS_FILE, doc)


def read_shadow_stats(models_dir: Path | str, name: str) -> ShadowStats | None:
    doc = _read_json(Path(models_dir) / SHADOW_STATS_FILE, {})
    entry = doc.get(name)
    if entry is None:
        return None
    try:
        return ShadowStats(**entry)
    except TypeError as exc:
        raise ModelError("corrupt", f"shadow figures of {name} are malformed: {exc}") from exc


def promotion_failures(stats: ShadowStats | None, criteria: PromotionCriteria) -> list[str]:
    """Why the figures do not (yet) justify promotion; empty when they do."""
    if stats is None:
        return ["no shadow figures recorded yet"]
    out: list[str] = []
    if stats.n_scored < criteria.min_scored:
        out.append(f"only {stats.n_scored} readings scored in shadow (< {criteria.min_scored})")
    if stats.agreement is not None and stats.agreement < criteria.min_agreement:
        out.append(f"agreement {stats.agreement:.3f} < {criteria.min_agreement:.3f}")
    if stats.candidate_error is not None and stats.active_error is not None:
        limit = stats.active_error * criteria.max_error_ratio
        if stats.candidate_error > limit:
            out.append(
                f"candidate error {stats.candidate_error:.4g} > active error × "
                f"{criteria.max_error_ratio:g} = {limit:.4g}"
            )
    return out


def promote(
    models_dir: Path | str,
    name: str,
    criteria: PromotionCriteria | None = None,
    *,
    force: bool = False,
) -> int:
    """Make the shadow candidate of ``name`` active when its figures hold; returns its version."""
    models_dir = Path(models_dir)
    _check_name(name)
    criteria = criteria or PromotionCriteria()
    with _locked(models_dir):
        shadow = read_shadow(models_dir)
        version = shadow.get(name)
        if version is None:
            raise ModelError("invalid_shadow", f"{name} has no version in shadow")
        stats = read_shadow_stats(models_dir, name)
        if stats is not None and stats.version != version:
            stats = None  # figures of an earlier candidate say nothing about this one
        failures = promotion_failures(stats, criteria)
        if failures and not force:
            raise ModelError("not_promotable", f"{name} v{version}: " + "; ".join(failures))
        _verify_artifact(models_dir, name, version)
        _set_active(models_dir, name, version, "promote")
        del shadow[name]
        _write_json_atomic(models_dir / SHADOW_FILE, shadow)
    log.info("promoted %s v%d%s", name, version, " (forced)" if failures else "")
    return version


# --- inspection ---------------------------------------------------------------------------------


def list_versions(models_dir: Path | str) -> list[VersionInfo]:
    models_dir = Path(models_dir)
    active = read_active(models_dir) if (models_dir / ACTIVE_FILE).exists() else {}
    shadow = read_shadow(models_dir)
    out: list[VersionInfo] = []
    for name, version in stored_versions(models_dir):
        try:
            meta = read_meta(models_dir, name, version)
        except ModelError:
            meta = {}
        path = artifact_path(models_dir, name, version)
        out.append(
            VersionInfo(
                name=name,
                version=version,
                trained_at=meta.get("trained_at"),
                active=active.get(name) == version,
                shadow=shadow.get(name) == version,
                metrics=meta.get("metrics") or {},
                size_bytes=path.stat().st_size if path.exists() else None,
            )
        )
    return out


def verify(models_dir: Path | str) -> list[VerifyResult]:
    """Check every stored artifact's checksum, and that active/shadow versions exist."""
    models_dir = Path(models_dir)
    results: list[VerifyResult] = []
    seen: set[tuple[str, int]] = set()
    for name, version in stored_versions(models_dir):
        seen.add((name, version))
        results.append(_verify_one(models_dir, name, version))
    referenced: dict[tuple[str, int], str] = {}
    try:
        referenced |= {(n, v): ACTIVE_FILE for n, v in read_active(models_dir).items()}
    except ModelError as exc:
        results.append(VerifyResult(ACTIVE_FILE, 0, False, exc.reason, exc.detail))
    referenced |= {(n, v): SHADOW_FILE for n, v in read_shadow(models_dir).items()}
    for (name, version), source in sorted(referenced.items()):
        if (name, version) not in seen:
            detail = f"{source} names {name} v{version}, which is not stored"
            results.append(VerifyResult(name, version, False, "missing", detail))
    return results


def _verify_one(models_dir: Path, name: str, version: int) -> VerifyResult:
    try:
        _verify_artifact(models_dir, name, version)
    except ModelError as exc:
        return VerifyResult(name, version, False, exc.reason, exc.detail)
    return VerifyResult(name, version, True, "ok", "sha256 matches")
