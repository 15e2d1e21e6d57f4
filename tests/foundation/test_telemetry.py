"""Telemetry: trace ids on log lines, the resource, the exporter choice from OTEL_* variables."""

from __future__ import annotations

import io
import json

import pytest
import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace.export import ConsoleSpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from plumbing import telemetry


def _configure(stream: io.StringIO, exporter: InMemorySpanExporter) -> telemetry.Telemetry:
    return telemetry.configure(
        service_name="syncd", service_version="9.9.9", span_exporter=exporter, stream=stream
    )


def test_log_inside_a_span_carries_its_ids() -> None:
    stream, exporter = io.StringIO(), InMemorySpanExporter()
    _configure(stream, exporter)
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("reconcile") as span:
        structlog.get_logger().info("inside", path="kv/app")
    structlog.get_logger().info("outside")

    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    context = span.get_span_context()
    assert inside["trace_id"] == format(context.trace_id, "032x")
    assert inside["span_id"] == format(context.span_id, "016x")
    assert inside["event"] == "inside" and inside["path"] == "kv/app"
    assert "trace_id" not in outside
    [finished] = exporter.get_finished_spans()
    assert finished.context.trace_id == context.trace_id


def test_resource_names_the_service() -> None:
    exporter = InMemorySpanExporter()
    _configure(io.StringIO(), exporter)
    with trace.get_tracer("test").start_as_current_span("x"):
        pass
    [span] = exporter.get_finished_spans()
    attributes = span.resource.attributes
    assert attributes["service.name"] == "syncd"
    assert attributes["service.version"] == "9.9.9"
    assert attributes["service.instance.id"]


def test_log_level_filters() -> None:
    stream = io.StringIO()
    telemetry.configure(
        service_name="s", service_version="1", log_level="warning",
        span_exporter=InMemorySpanExporter(), stream=stream,
    )
    structlog.get_logger().info("quiet")
    structlog.get_logger().warning("loud")
    assert [json.loads(line)["event"] for line in stream.getvalue().splitlines()] == ["loud"]


def test_console_format_is_not_json() -> None:
    stream = io.StringIO()
    telemetry.configure(
        service_name="s", service_version="1", log_format="console",
        span_exporter=InMemorySpanExporter(), stream=stream,
    )
    structlog.get_logger().info("hello", path="kv/app")
    line = stream.getvalue()
    assert "hello" in line and "path=kv/app" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({}, type(None)),
        ({"OTEL_TRACES_EXPORTER": "none"}, type(None)),
        ({"OTEL_TRACES_EXPORTER": "console"}, ConsoleSpanExporter),
    ],
)
def test_exporter_follows_environment(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], expected: type
) -> None:
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert isinstance(telemetry._exporter_from_environment(), expected)


def test_unknown_exporter_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(telemetry.TelemetryError, match="OTEL_TRACES_EXPORTER='zipkin'"):
        telemetry._exporter_from_environment()


def test_otlp_without_the_extra_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("opentelemetry.sdk")
    try:
        import opentelemetry.exporter.otlp.proto.http.trace_exporter  # noqa: F401
    except ImportError:
        monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
        with pytest.raises(telemetry.TelemetryError, match="otlp"):
            telemetry._exporter_from_environment()
    else:
        pytest.skip("the otlp extra is installed here; the missing-extra error cannot happen")
