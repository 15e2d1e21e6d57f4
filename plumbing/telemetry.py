"""One call at start-up sets up structured logs and traces for either service.

Logs are structlog JSON lines (or a console format for people), with the current span's
``trace_id``/``span_id`` on every line logged inside a span, so a log line and its trace can be
joined. Traces use the OpenTelemetry SDK; the exporter follows the standard ``OTEL_*``
variables so operators configure it the way they configure everything else:

- ``OTEL_TRACES_EXPORTER``: ``otlp`` (needs the ``otlp`` extra), ``console`` or ``none``. When
  unset, OTLP is used if the extra is installed and an ``OTEL_EXPORTER_OTLP_*ENDPOINT`` is set,
  otherwise nothing is exported (a Raspberry Pi without a collector should not pay for spans).
- ``OTEL_METRICS_EXPORTER``: the same choices for metrics (``otlp``, ``console``, ``none``),
  with the same default.
- ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` are honoured by the SDK's resource.

Metrics are also always readable in Prometheus text format (:func:`prometheus_exposition`,
served at ``/metrics`` by :mod:`plumbing.health`): a pull reader, so nothing is computed until
a scrape comes. OpenTelemetry's Prometheus exporter does the conversion (``syncd.syncs`` becomes
``syncd_syncs_total``); measured against prometheus-client alone it costs the same (it is
prometheus-client plus one module: +0.6 MiB RSS over syncd's imports either way), and it reads
the instruments the OTLP exporter reads, so both show the same numbers.

Logs go to stderr: stdout is kept for command output (``unsealer status``).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any, Literal, TextIO

import structlog
from opentelemetry import metrics, trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.util._once import Once
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from plumbing.redaction import Redactor, render_exceptions

LogFormat = Literal["json", "console"]
LOG_FORMATS: tuple[LogFormat, ...] = ("json", "console")
LOG_LEVELS = ("debug", "info", "warning", "error")


#: Durations in seconds get buckets in seconds (the SDK's default ones suit milliseconds).
_SECONDS = View(instrument_type=Histogram, instrument_unit="s",
                aggregation=ExplicitBucketHistogramAggregation(
                    (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)))

#: The registry ``/metrics`` renders: the Prometheus reader's of the current meter provider.
_PROMETHEUS: list[CollectorRegistry] = []


class TelemetryError(Exception):
    """A telemetry setting (an ``OTEL_*`` variable) is unusable."""


#: The logging methods of structlog's bound loggers that interpolate positional arguments.
_LEVEL_METHODS = ("debug", "info", "warning", "warn", "error", "exception", "critical", "fatal",
                  "msg")


def without_positional_arguments(
    base: type[structlog.typing.FilteringBoundLogger],
) -> type[structlog.typing.FilteringBoundLogger]:
    """``base`` whose methods never %-interpolate positional arguments into the event.

    ``log.info("read %s", value)`` would put ``value`` into the one field redaction never looks
    at. The arguments are dropped instead (and counted, in ``positional_args_dropped``, so the
    mistake shows): values go in keyword fields, where redaction sees their names.
    """
    namespace: dict[str, Any] = {"__doc__": base.__doc__}
    for name in _LEVEL_METHODS:
        namespace[name] = _dropping(getattr(base, name))
        namespace["a" + name] = _adropping(getattr(base, "a" + name))

    def log(self: Any, level: int, event: str, *args: Any, **kw: Any) -> Any:
        return base.log(self, level, event, **_counted(args, kw))

    async def alog(self: Any, level: int, event: str, *args: Any, **kw: Any) -> Any:
        return await base.alog(self, level, event, **_counted(args, kw))

    namespace.update(log=log, alog=alog)
    return type(base.__name__, (base,), namespace)


def _counted(args: tuple[Any, ...], kw: dict[str, Any]) -> dict[str, Any]:
    if args:
        kw["positional_args_dropped"] = len(args)
    return kw


def _dropping(method: Callable[..., Any]) -> Callable[..., Any]:
    def call(self: Any, event: str | None = None, *args: Any, **kw: Any) -> Any:
        return method(self, event, **_counted(args, kw))

    return call


def _adropping(method: Callable[..., Any]) -> Callable[..., Any]:
    async def call(self: Any, event: str | None = None, *args: Any, **kw: Any) -> Any:
        return await method(self, event, **_counted(args, kw))

    return call


def add_trace_context(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Add the current span's ids, hex-encoded the way trace back-ends display them."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict["trace_id"] = format(context.trace_id, "032x")
        event_dict["span_id"] = format(context.span_id, "016x")
    return event_dict


@dataclass(frozen=True)
class Telemetry:
    """What :func:`configure` set up; call :meth:`shutdown` last, to flush spans."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def _choice(signal: str) -> str | None:
    """``otlp``, ``console`` or None for ``signal`` ("TRACES", "METRICS"), from OTEL_*."""
    variable = f"OTEL_{signal}_EXPORTER"
    choice = os.environ.get(variable, "").strip().lower()
    endpoint_set = any(
        os.environ.get(name)
        for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
    )
    if choice == "":
        return "otlp" if endpoint_set and _otlp_installed() else None
    if choice == "none":
        return None
    if choice == "otlp" and not _otlp_installed():
        raise TelemetryError(
            f"{variable}=otlp needs the 'otlp' extra: pip install 'vault-syncd[otlp]'"
        )
    if choice in ("otlp", "console"):
        return choice
    raise TelemetryError(
        f"{variable}={choice!r} is not supported (choose otlp, console or none)"
    )


def _otlp_installed() -> bool:
    try:
        import opentelemetry.exporter.otlp.proto.http  # type: ignore[import-not-found,unused-ignore]  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def _exporter_from_environment() -> SpanExporter | None:
    choice = _choice("TRACES")
    if choice == "console":
        return ConsoleSpanExporter(out=sys.stderr)
    if choice == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415
            OTLPSpanExporter,
        )

        return OTLPSpanExporter()  # type: ignore[no-any-return,unused-ignore]
    return None


def _metric_reader_from_environment() -> MetricReader | None:
    choice = _choice("METRICS")
    if choice == "console":
        return PeriodicExportingMetricReader(ConsoleMetricExporter(out=sys.stderr))
    if choice == "otlp":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415
            OTLPMetricExporter,
        )

        return PeriodicExportingMetricReader(OTLPMetricExporter())
    return None


def configure(
    *,
    service_name: str,
    service_version: str,
    log_format: LogFormat = "json",
    log_level: str = "info",
    sensitive_keys: Iterable[str] = (),
    span_exporter: SpanExporter | None = None,
    metric_reader: MetricReader | None = None,
    stream: TextIO | None = None,
) -> Telemetry:
    """Set up structlog and the global OpenTelemetry tracer provider.

    ``span_exporter`` and ``metric_reader`` override the environment (tests pass the SDK's
    in-memory exporter and reader; spans are then exported synchronously, so a test sees a span
    as soon as it ends). ``stream`` defaults to stderr.
    """
    level = logging.getLevelNamesMapping()[log_level.upper()]
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer(colors=False)
        if log_format == "console"
        else structlog.processors.JSONRenderer(sort_keys=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            add_trace_context,
            # Exceptions are rendered first, so that redaction sees all there is to render.
            render_exceptions,
            Redactor(extra_keys=sensitive_keys),
            renderer,
        ],
        wrapper_class=without_positional_arguments(structlog.make_filtering_bound_logger(level)),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
    resource = Resource.create(
        {
            "service.name": service_name,
            "service.version": service_version,
            "service.instance.id": f"{socket.gethostname()}/{os.getpid()}",
        }
    )
    provider = TracerProvider(resource=resource)
    if span_exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    else:
        exporter = _exporter_from_environment()
        if exporter is not None:
            provider.add_span_processor(BatchSpanProcessor(exporter))
    reader = metric_reader or _metric_reader_from_environment()
    # A registry of its own, not prometheus-client's global one: a process that configures
    # telemetry again (the tests) exposes the newest provider's metrics only.
    registry = CollectorRegistry(auto_describe=False)
    scraped = PrometheusMetricReader(registry=registry, scope_info_enabled=False)
    meters = MeterProvider(resource=resource,
                           metric_readers=[scraped, *([reader] if reader else [])],
                           views=[_SECONDS])
    _set_providers(provider, meters)
    _PROMETHEUS[:] = [registry]
    return Telemetry(tracer_provider=provider, meter_provider=meters)


def prometheus_exposition() -> tuple[bytes, str]:
    """The current metrics in Prometheus text format, and its content type (empty before
    :func:`configure`). Served as format 0.0.4, which every Prometheus (2.x and 3.x) reads;
    the text is the same (no UTF-8 metric names here)."""
    if not _PROMETHEUS:
        return b"", CONTENT_TYPE_PLAIN_0_0_4
    return generate_latest(_PROMETHEUS[0]), CONTENT_TYPE_PLAIN_0_0_4


def _set_providers(tracer_provider: TracerProvider, meter_provider: MeterProvider) -> None:
    # The API refuses to replace a global provider once set (it logs and ignores the call). A
    # process configures telemetry once, but tests configure it many times, so the proxy
    # tracers and meters handed out earlier must follow the newest provider: reset the guards.
    trace._TRACER_PROVIDER_SET_ONCE = trace.Once()  # type: ignore[attr-defined]
    trace._TRACER_PROVIDER = None
    trace.set_tracer_provider(tracer_provider)
    metrics._internal._METER_PROVIDER_SET_ONCE = Once()
    metrics._internal._METER_PROVIDER = None
    metrics.set_meter_provider(meter_provider)


def tracer(name: str) -> trace.Tracer:
    """The tracer ``name`` of the current provider, looked up at each use.

    Module-level tracers from ``trace.get_tracer`` bind to the first provider for good; a
    process that configures telemetry again (every test does) would keep sending spans to the
    old one. The tracer is kept per provider: making one per span (the SDK builds a new Tracer
    and its scope at each call) was 4 % of an unchanged refresh's CPU.
    """
    provider = trace.get_tracer_provider()
    cached = _TRACERS.get(name)
    if cached is None or cached[0] is not provider:
        cached = _TRACERS[name] = (provider, provider.get_tracer(name))
    return cached[1]


#: name -> (the provider, its tracer of that name).
_TRACERS: dict[str, tuple[trace.TracerProvider, trace.Tracer]] = {}


def meter(name: str) -> metrics.Meter:
    """The meter ``name`` of the current provider; create instruments from it at start-up."""
    return metrics.get_meter_provider().get_meter(name)
