"""The operator logs as text for people or as one JSON object per line for log collectors."""

from __future__ import annotations

import json
import logging

import pytest

from batchnotebook_operator.__main__ import configure_logging, parse_args


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_logs_are_one_object_per_line(restore_logging, capsys):
    configure_logging(parse_args(["--log-format", "json"]))
    logging.getLogger("batchnotebook_operator.test").warning("cluster %s: no answer", "hpc")
    line = capsys.readouterr().err.strip().splitlines()[-1]
    record = json.loads(line)
    assert record["message"] == "cluster hpc: no answer"
    assert record["severity"] == "warn" and record["timestamp"]


def test_the_format_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("BATCHNOTEBOOK_LOG_FORMAT", "json")
    assert parse_args([]).log_format == "json"
    monkeypatch.delenv("BATCHNOTEBOOK_LOG_FORMAT")
    assert parse_args([]).log_format == "full"
    with pytest.raises(SystemExit):
        parse_args(["--log-format", "xml"])
