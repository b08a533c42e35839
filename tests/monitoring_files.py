"""The monitoring files in deploy/ as tests read them: promtool, the rule and dashboard queries, the
metric names a PromQL expression reads, and the sample names a metrics page exports.

Importable from every test directory: pytest puts ``tests/`` on ``sys.path`` for its conftest.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "deploy" / "prometheus" / "rules.yml"
PROMETHEUS_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "syncworker.json"
SCRAPE_JOB = "syncworker"
# Series Prometheus itself writes for each scrape target; the worker does not export them.
PROMETHEUS_SERIES = frozenset({"up"})

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_OFFSET = re.compile(r"\boffset\s+-?[\w$]+")
_IDENTIFIER = re.compile(r"(?<![\w.$:])[A-Za-z_:][\w:]*(?![\w:])(?!\s*\()")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "inf", "nan", "by", "without", "on", "ignoring"}
    | {"group_left", "group_right", "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count"}
    | {"count_values", "bottomk", "topk", "quantile"}
)


def promtool() -> str:
    """promtool's path. Missing, it fails the test: `./manage.sh test` installs it."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    path = shutil.which("promtool", path=search)
    if path is None:
        pytest.fail(
            "promtool is missing: `./manage.sh test` takes it from Debian's `prometheus` package, "
            "or put Prometheus's promtool on PATH"
        )
    return path


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120, check=False)


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def alert_names() -> set[str]:
    return {rule["alert"] for rule in rules() if "alert" in rule}


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def dashboard_queries() -> dict[str, list[str]]:
    """Panel title -> the PromQL of each of its targets."""
    return {
        panel["title"]: [target.get("expr", "") for target in panel.get("targets", [])]
        for panel in dashboard()["panels"]
    }


def every_expression() -> list[str]:
    exprs = [str(rule["expr"]) for rule in rules()]
    return exprs + [expr for queries in dashboard_queries().values() for expr in queries]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (no full parser: strings, label matchers, ranges,
    grouping lists and offsets are cut out, then every identifier that is not a call or keyword)."""
    text = _STRINGS.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _OFFSET.sub(" ", _GROUPING.sub(" ", text))
    return {name for name in _IDENTIFIER.findall(text) if name.lower() not in _KEYWORDS}


_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("", "_count", "_sum"),
}


def exported_sample_names(exposition: str) -> set[str]:
    """Every sample name a metrics page offers, also for families that have no sample yet."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names |= {sample.name for sample in family.samples}
        names |= {family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",))}
    return names
