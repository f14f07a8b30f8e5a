"""The Dockerfile, read as the builder reads it (no container engine here to build it): the
targets the chart and the Zero to JupyterHub values name, non-root users, what reaches the
build context."""

from __future__ import annotations

import fnmatch
import re
import shlex
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def stages() -> dict[str, list[tuple[str, str]]]:
    """Each named stage's instructions, FROM first."""
    found: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for word, rest in instructions((REPO / "Dockerfile").read_text()):
        if word == "FROM":
            base, _, name = rest.partition(" AS ")
            current = found.setdefault(name.strip(), [("FROM", base.strip())])
        elif current is not None:
            current.append((word, rest))
    return found


def last(stage: list[tuple[str, str]], word: str) -> str | None:
    values = [rest for w, rest in stage if w == word]
    return values[-1] if values else None


def test_the_operator_and_hub_targets_exist_and_end_unprivileged():
    targets = stages()
    assert {"operator", "hub"} <= targets.keys()
    for name in ("operator", "hub"):
        user = last(targets[name], "USER")
        assert user is not None, f"{name} sets no USER"
        uid = user.split(":")[0]
        assert uid.isdigit() and int(uid) != 0, f"{name} runs as {user}"


def test_the_operator_image_is_slim_and_runs_the_entry_point():
    operator = stages()["operator"]
    assert operator[0] == ("FROM", "${PYTHON_IMAGE}")
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.\d+-slim", (REPO / "Dockerfile").read_text())
    assert last(operator, "ENTRYPOINT") == '["batchnotebook-operator"]'
    # Built elsewhere, copied in: no compiler, pip cache or wheel in the final image.
    copies = [rest for word, rest in operator if word == "COPY"]
    assert copies == ["--from=operator-venv /opt/batchnotebook /opt/batchnotebook"]
    env = last(operator, "ENV") or ""
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "HOME=/tmp" in env
    # The user exists in the image with the uid the chart's securityContext sets.
    run = " ".join(rest for word, rest in operator if word == "RUN")
    assert "--uid 10001" in run
    chart_values = (REPO / "charts/batchnotebook/values.yaml").read_text()
    assert "runAsUser: 10001" in chart_values


def test_every_copy_from_names_an_earlier_stage():
    seen: list[str] = []
    for name, stage in stages().items():
        for word, rest in stage:
            if word == "COPY" and rest.startswith("--from="):
                source = shlex.split(rest)[0].removeprefix("--from=")
                assert source in seen, f"{name} copies from {source}, not an earlier stage"
        seen.append(name)


def test_the_hub_image_installs_the_project_wheel():
    hub = stages()["hub"]
    assert hub[0] == ("FROM", "${HUB_BASE_IMAGE}")
    run = " ".join(rest for word, rest in hub if word == "RUN")
    # Without the operator extra: the spawner needs only batchnotebook_api and what the hub image
    # has; the operator's dependencies stay out.
    assert "pip install --no-cache-dir /tmp/wheels/*.whl" in run
    assert "[operator]" not in run
    operator_venv = " ".join(rest for word, rest in stages()["operator-venv"] if word == "RUN")
    assert '"${wheel}[operator]"' in operator_venv


def test_the_build_context_holds_the_sources_only():
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def sent(path: str) -> bool:
        # .dockerignore semantics: the last matching pattern wins; "!" re-includes.
        included = True
        for pattern in patterns:
            negated = pattern.startswith("!")
            bare = pattern.lstrip("!").rstrip("/").removeprefix("**/")
            parts = path.split("/")
            if any(
                fnmatch.fnmatch("/".join(parts[: i + 1]), bare) or fnmatch.fnmatch(parts[i], bare)
                for i in range(len(parts))
            ):
                included = negated
        return included

    sources = ("api/batchnotebook_api/status.py", "operator/batchnotebook_operator/kube.py")
    for path in ("pyproject.toml", "README.md", *sources):
        assert sent(path), path
    for path in (".venv/bin/python", ".git/config", ".test/kubeconfig", "tests/unit/x.py"):
        assert not sent(path), path
    assert not sent("operator/batchnotebook_operator/__pycache__/kube.cpython-311.pyc")
