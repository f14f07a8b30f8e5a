# The operator image (a fuller multi-stage build with scheduler clients and a hub target comes
# with the Helm chart). Non-root; the scheduler's command-line tools are added by the site.
FROM python:3.11-slim AS operator
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
COPY spawner ./spawner
RUN pip install --no-cache-dir . && useradd --uid 10001 --no-create-home batchnotebook
USER 10001
EXPOSE 8080
ENTRYPOINT ["batchnotebook-operator"]
