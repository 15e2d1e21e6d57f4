"""The redaction processor: no value under a sensitive key reaches the rendered line."""

from __future__ import annotations

import io

import pytest
import structlog
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from plumbing import telemetry
from plumbing.redaction import REDACTED, SENSITIVE_KEYS

SECRET = "s3cr3t-Value-7f1c"


def _render(log_format: str, **fields: object) -> str:
    stream = io.StringIO()
    telemetry.configure(
        service_name="t", service_version="1", log_format=log_format,  # type: ignore[arg-type]
        sensitive_keys=("custom_field",), span_exporter=InMemorySpanExporter(), stream=stream,
    )
    structlog.get_logger().info("event", **fields)
    return stream.getvalue()


def _nestings(key: str) -> list[object]:
    return [
        {key: SECRET},
        {"outer": {key: SECRET}},
        {"outer": [{"inner": {key: SECRET}}]},
        {"outer": ({key: [SECRET, SECRET]},)},
    ]


@pytest.mark.parametrize("log_format", ["json", "console"])
@pytest.mark.parametrize("key", sorted(SENSITIVE_KEYS | {"custom_field", "Token", "ROOT_TOKEN"}))
def test_sensitive_keys_are_redacted_at_any_depth(log_format: str, key: str) -> None:
    for nesting in _nestings(key):
        assert isinstance(nesting, dict)
        line = _render(log_format, **nesting)
        assert SECRET not in line, (key, nesting)
        assert REDACTED in line


def test_other_keys_stay_readable() -> None:
    line = _render("json", path="kv/app", token_ttl="1h", data_keys=["a", "b"])
    assert "kv/app" in line and "1h" in line and '"a"' in line
