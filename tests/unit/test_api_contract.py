"""batchnotebook_api against crds/: the condition types, the status keys and the printer columns
say the same thing in both; and the spawner imports nothing of the operator."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import get_type_hints

import yaml

from batchnotebook_api.status import (
    CLUSTER_CONDITIONS,
    NOTEBOOK_CONDITIONS,
    ClusterStatus,
    ConditionType,
    NotebookStatus,
    Phase,
)

REPO = Path(__file__).resolve().parents[2]


def version(kind: str) -> dict:
    crd = yaml.safe_load((REPO / "crds" / f"batchnotebook.dev_{kind}.yaml").read_text())
    [served] = crd["spec"]["versions"]
    return served


def status_schema(kind: str) -> dict:
    return version(kind)["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]


def test_the_status_shapes_have_the_crds_keys():
    assert set(get_type_hints(NotebookStatus)) == set(status_schema("batchnotebooks"))
    assert set(get_type_hints(ClusterStatus)) == set(status_schema("batchclusters"))


def test_the_phases_are_the_crds():
    assert [p.value for p in Phase] == status_schema("batchnotebooks")["phase"]["enum"]


def test_every_condition_type_is_described_where_it_is_used():
    notebook = status_schema("batchnotebooks")["conditions"]["description"]
    cluster = status_schema("batchclusters")["conditions"]["description"]
    for type_ in NOTEBOOK_CONDITIONS:
        assert re.search(rf"\b{type_}\b", notebook), type_
    for type_ in CLUSTER_CONDITIONS:
        assert re.search(rf"\b{type_}\b", cluster), type_
    assert set(re.findall(r"\b[A-Z][a-zA-Z]+(?= \()", notebook)) == set(NOTEBOOK_CONDITIONS)
    # One name for one idea: the cluster's condition is the notebook's SchedulerReachable.
    assert CLUSTER_CONDITIONS == (ConditionType.SCHEDULER_REACHABLE,)


def test_the_printer_columns_read_fields_and_conditions_that_exist():
    for kind in ("batchnotebooks", "batchclusters"):
        status = status_schema(kind)
        for column in version(kind)["additionalPrinterColumns"]:
            path = column["jsonPath"]
            if path.startswith(".status.conditions"):
                [type_] = re.findall(r'@\.type=="(\w+)"', path)
                assert type_ in {t.value for t in ConditionType}, (kind, column)
            elif path.startswith(".status."):
                assert path.removeprefix(".status.") in status, (kind, column)


def test_the_spawner_imports_only_the_api_package_of_ours():
    ours = {"batchnotebook_operator", "batchnotebook_api", "batchnotebook_spawner"}
    for path in (REPO / "spawner" / "batchnotebook_spawner").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                top = node.module.split(".")[0]
            elif isinstance(node, ast.Import):
                top = node.names[0].name.split(".")[0]
            else:
                continue
            assert top not in ours - {"batchnotebook_api", "batchnotebook_spawner"}, path


def test_the_api_package_needs_nothing_beyond_python():
    for path in (REPO / "api" / "batchnotebook_api").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                assert node.module.split(".")[0] in {"__future__", *STDLIB}, (path, node.module)
            elif isinstance(node, ast.Import):
                assert node.names[0].name.split(".")[0] in STDLIB, path


STDLIB = {"dataclasses", "datetime", "enum", "re", "typing", "collections"}
