# syntax=docker/dockerfile:1
# Two images from one build:
#   docker build --target operator -t ghcr.io/batchnotebook/operator:0.1.0 .
#   docker build --target hub      -t ghcr.io/batchnotebook/hub:0.1.0 .
# The operator image is small and runs as uid 10001 on a read-only root filesystem (the chart
# mounts /tmp). A site that submits with the scheduler's own command-line tools from the pod
# (transport "local") adds them: --build-arg SCHEDULER_PACKAGES="slurm-client munge".
# The ssh and slurmrest transports need nothing more (asyncssh and HTTP, both in Python).
# The hub image is Zero to JupyterHub's hub image with the spawner installed.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG HUB_BASE_IMAGE=quay.io/jupyterhub/k8s-hub:4.4.0

# ---- the project as a wheel (api, operator and spawner packages, one distribution) -----------
FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY api ./api
COPY operator ./operator
COPY spawner ./spawner
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# ---- the operator's virtualenv, built apart so that no build tool reaches the image ----------
FROM ${PYTHON_IMAGE} AS operator-venv
COPY --from=wheel /wheels /wheels
RUN python -m venv /opt/batchnotebook \
    && wheel=$(echo /wheels/*.whl) \
    && /opt/batchnotebook/bin/pip install --no-cache-dir "${wheel}[operator]"

# ---- the operator ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS operator
ARG SCHEDULER_PACKAGES=""
# Which packages (and so which versions) is the site's choice: nothing to pin here.
# hadolint ignore=DL3008
RUN if [ -n "$SCHEDULER_PACKAGES" ]; then \
        apt-get update \
        && apt-get install -y --no-install-recommends $SCHEDULER_PACKAGES \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && groupadd --gid 10001 batchnotebook \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp \
        --shell /usr/sbin/nologin batchnotebook
COPY --from=operator-venv /opt/batchnotebook /opt/batchnotebook
# Nothing is written outside /tmp: bytecode was compiled at install time.
ENV PATH=/opt/batchnotebook/bin:$PATH \
    HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
# Job reports and /metrics; kopf's liveness probe.
EXPOSE 8080 8081
ENTRYPOINT ["batchnotebook-operator"]

# ---- the hub: Zero to JupyterHub's image plus the spawner ------------------------------------
# Without the operator extra: the spawner imports only batchnotebook_api and what the hub image
# has (JupyterHub, KubeSpawner, kubernetes_asyncio, Jinja2); kopf, asyncssh and the rest of the
# operator's dependencies stay out of the hub.
FROM ${HUB_BASE_IMAGE} AS hub
USER 0
COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-cache-dir /tmp/wheels/*.whl && rm -rf /tmp/wheels
# The base image's unprivileged user (jovyan).
USER 1000
