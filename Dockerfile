# syntax=docker/dockerfile:1
# One image for every sensorpipe service (migrate, ingest, score, api, simulate): the compose
# services differ only in their command. Build: `docker build -t sensorpipe .`
#
# The base is pinned by tag (Python minor + Debian release). For fully reproducible builds pin
# it by digest as well: --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:<digest>.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: install the project and its dependencies into a self-contained virtualenv ----------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/sensorpipe
ENV PATH=/opt/sensorpipe/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core/ core/
COPY ingestor/ ingestor/
COPY scorer/ scorer/
COPY api/ api/
COPY simulators/ simulators/
COPY sensorpipe/ sensorpipe/
# Every dependency ships manylinux wheels, so no compiler is needed; the pip cache lives in a
# BuildKit cache mount, not in a layer. The venv's bundled pip/setuptools are old (and have known
# CVEs): upgrade them first.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --upgrade pip setuptools && \
    pip install . && \
    sensorpipe --help > /dev/null
# Compile the numba scoring kernel now (tens of seconds) instead of in every new container: the
# Engine constructor compiles it into NUMBA_CACHE_DIR, which the runtime stage copies. numba
# keys the cache on kernel.py's path, size and mtime (kept by COPY) and on the CPU; on a CPU
# unlike the builder's it compiles once more at start-up and adds to the (writable) cache.
ENV NUMBA_CACHE_DIR=/var/cache/sensorpipe/numba
RUN python -c "from core.scoring.engine import Engine, IfCalibration; \
from core.scoring.config import ScoringConfig; from core.scoring.forecaster import ForecasterSpec; \
Engine(ScoringConfig(), ForecasterSpec(), None, IfCalibration())"

# --- runtime: the virtualenv, the migrations and the models; no compiler, no pip cache ---------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="sensorpipe" \
      org.opencontainers.image.description="Event-driven telemetry pipeline for sensors" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/sensorpipe/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MODELS_DIR=/app/models \
    NUMBA_CACHE_DIR=/var/cache/sensorpipe/numba
# The base image's own pip/setuptools/wheel are never used (the virtualenv has its own) and
# carry CVEs of their own: remove them, so the image scan reports only what runs.
RUN /usr/local/bin/python -m pip uninstall --yes --quiet pip setuptools wheel && \
    groupadd --system --gid 10001 sensorpipe && \
    useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
            --shell /usr/sbin/nologin sensorpipe
COPY --from=build /opt/sensorpipe /opt/sensorpipe
# numba needs its cache directory writable (it checks at import of the kernel, and adds entries
# when it compiles for a new CPU), so this one directory belongs to the service user.
COPY --from=build --chown=10001:10001 /var/cache/sensorpipe/numba /var/cache/sensorpipe/numba
WORKDIR /app
# `sensorpipe migrate` finds migrations/ in the working directory; the services read the model
# registry from MODELS_DIR. Both stay owned by root: the services only read them.
COPY alembic.ini ./
COPY migrations/ migrations/
COPY models/ models/
# Unprivileged at run time (numeric, so Kubernetes' runAsNonRoot can verify it).
USER 10001:10001
# api, ingestor /metrics, scorer /metrics
EXPOSE 8000 9101 9102
ENTRYPOINT ["sensorpipe"]
CMD ["--help"]
