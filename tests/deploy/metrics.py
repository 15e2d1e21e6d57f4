"""Scraping ``/metrics`` and what the Prometheus component refers to (shared by the tests)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

COMPONENT = Path(__file__).resolve().parents[2] / "manifests" / "components" / "prometheus"
_METRIC = re.compile(r"\b((?:syncd|unsealer)_[a-z_]+)\b")

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(port: int) -> tuple[str, str, Samples]:
    """GET /metrics: its content type, its text, and every sample (name, sorted labels) ->
    value, through prometheus-client's parser (which raises on anything malformed)."""
    async with aiohttp.ClientSession() as session, \
            session.get(f"http://127.0.0.1:{port}/metrics") as response:
        assert response.status == 200
        text = await response.text()
        content_type = response.headers["Content-Type"]
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return content_type, text, samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The sample ``name`` whose labels include ``labels`` (summed if several match)."""
    found = [v for (n, have), v in samples.items()
             if n == name and set(labels.items()) <= set(have)]
    return sum(found) if found else None


def referenced(prefix: str) -> set[str]:
    """Every metric starting with ``prefix`` that an alert rule or a dashboard panel uses."""
    expressions = []
    for document in yaml.safe_load_all((COMPONENT / "rules.yaml").read_text()):
        for group in document["spec"]["groups"]:
            expressions += [rule["expr"] for rule in group["rules"]]
    dashboard = json.loads((COMPONENT / "dashboard.json").read_text())
    expressions += [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    names = {name for expr in expressions for name in _METRIC.findall(expr)}
    return {name for name in names if name.startswith(prefix)}
