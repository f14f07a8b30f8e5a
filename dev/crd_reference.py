"""Write docs/configuration.md, the configuration reference, from the CRDs' own schemas.

The descriptions in crds/*.yaml are the single source; `make docs` regenerates the page and a
unit test fails when it is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
CRDS = ("batchnotebook.dev_batchclusters.yaml", "batchnotebook.dev_batchnotebooks.yaml")
OUTPUT = REPO / "docs" / "configuration.md"


def _type(schema: dict) -> str:
    kind = schema.get("type", "object")
    if kind == "array":
        return f"array of {_type(schema.get('items', {}))}"
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    if schema.get("format"):
        return f"{kind} ({schema['format']})"
    return kind


def _details(schema: dict) -> str:
    notes = []
    if "default" in schema and schema["default"] not in ({}, []):
        notes.append(f"default `{schema['default']}`")
    for key, word in (("minimum", "min"), ("maximum", "max"), ("pattern", "pattern")):
        if key in schema:
            notes.append(f"{word} `{schema[key]}`")
    return "; ".join(notes)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _rows(schema: dict, path: str, required: set[str]) -> list[str]:
    rows = []
    for name, child in schema.get("properties", {}).items():
        field = f"{path}.{name}" if path else name
        description = child.get("description", "")
        if name in required:
            description = f"**Required.** {description}"
        rows.append(
            f"| `{field}` | {_type(child)} | {_cell(description)} | {_cell(_details(child))} |"
        )
        nested = child.get("items", child) if child.get("type") == "array" else child
        rows += _rows(
            nested,
            f"{field}[]" if child.get("type") == "array" else field,
            set(nested.get("required", [])),
        )
    return rows


def reference() -> str:
    lines = [
        "# Configuration reference",
        "",
        "Generated from the CRD schemas in `crds/` by `make docs` (dev/crd_reference.py); do not",
        "edit by hand. `kubectl explain batchclusters.spec` shows the same descriptions.",
    ]
    for filename in CRDS:
        crd = yaml.safe_load((REPO / "crds" / filename).read_text())
        names = crd["spec"]["names"]
        version = crd["spec"]["versions"][0]
        schema = version["schema"]["openAPIV3Schema"]
        short_names = ", ".join(names.get("shortNames", []))
        lines += [
            "",
            f"## {names['kind']} ({crd['spec']['group']}/{version['name']}, "
            f"{crd['spec']['scope'].lower()}, short name `{short_names}`)",
            "",
            _cell(schema.get("description", "")),
        ]
        for part in ("spec", "status"):
            if part not in schema.get("properties", {}):
                continue
            lines += [
                "",
                f"### {part}",
                "",
                "| field | type | description | constraints |",
                "|---|---|---|---|",
                *_rows(
                    schema["properties"][part],
                    "",
                    set(schema["properties"][part].get("required", [])),
                ),
            ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        sys.exit(
            0 if OUTPUT.read_text() == reference() else "docs/configuration.md is stale: make docs"
        )
    OUTPUT.parent.mkdir(exist_ok=True)
    OUTPUT.write_text(reference())
