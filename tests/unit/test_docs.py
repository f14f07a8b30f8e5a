"""The configuration reference is generated from the CRDs, and kept in step with them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("crd_reference", REPO / "dev" / "crd_reference.py")
crd_reference = importlib.util.module_from_spec(spec)
spec.loader.exec_module(crd_reference)


def test_the_reference_is_up_to_date():
    assert crd_reference.OUTPUT.read_text() == crd_reference.reference(), "run `make docs`"


def test_every_field_is_described():
    reference = crd_reference.reference()
    rows = [line for line in reference.splitlines() if line.startswith("| `")]
    assert len(rows) > 100
    undescribed = [row.split("|")[1] for row in rows if not row.split("|")[3].strip()]
    assert undescribed == []
