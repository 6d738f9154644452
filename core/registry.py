"""The model registry: which version of each model is active, and loading it safely.

Layout of ``models/``::

    active.json                       {"anomaly_detector": 1, "forecaster": 1}
    <name>_v<N>.joblib                the artifact
    <name>_v<N>.meta.json             trained_at, data window, features, parameters, metrics,
                                      library versions, sha256 of the artifact

Loading verifies the checksum before unpickling (a joblib file is code: never load one whose bytes
we did not write) and checks the artifact's feature list against what the caller expects.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import ModelError

log = logging.getLogger(__name__)

ACTIVE_FILE = "active.json"


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


def read_active(models_dir: Path) -> dict[str, int]:
    path = models_dir / ACTIVE_FILE
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ModelError("missing", f"{path} does not exist") from exc
    except ValueError as exc:
        raise ModelError("corrupt", f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or not all(isinstance(v, int) for v in doc.values()):
        raise ModelError("corrupt", f"{path} must map model names to integer versions")
    return {str(k): int(v) for k, v in doc.items()}


def read_meta(models_dir: Path, name: str, version: int) -> dict[str, Any]:
    path = meta_path(models_dir, name, version)
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ModelError("missing", f"{path} does not exist") from exc
    except ValueError as exc:
        raise ModelError("corrupt", f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise ModelError("corrupt", f"{path} is not a JSON object")
    return meta


def load_version(
    models_dir: Path, name: str, version: int, expected_features: list[str] | None = None
) -> LoadedModel:
    """Load one version after verifying its checksum and (optionally) its feature list."""
    import joblib  # heavy import, only where a model is really loaded

    meta = read_meta(models_dir, name, version)
    path = artifact_path(models_dir, name, version)
    if not path.exists():
        raise ModelError("missing", f"{path} does not exist")
    actual = sha256_file(path)
    if actual != meta.get("sha256"):
        raise ModelError(
            "checksum_mismatch", f"{path} sha256 {actual[:12]}… does not match its meta.json"
        )
    if expected_features is not None and meta.get("features") != expected_features:
        raise ModelError(
            "incompatible",
            f"{name} v{version} was trained on features {meta.get('features')}, "
            f"this code computes {expected_features}",
        )
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
