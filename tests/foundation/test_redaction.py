"""The redaction processors: no value under a sensitive key, in an exception message or in a
positional argument reaches the rendered line."""

from __future__ import annotations

import io
import json

import pytest
import structlog
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from plumbing import telemetry
from plumbing.kube import KubeError
from plumbing.redaction import REDACTED, SENSITIVE_KEYS

SECRET = "s3cr3t-Value-7f1c"

#: Keys that must be redacted: listed ones, and ones only the last-word pattern covers.
MUST_REDACT = sorted(SENSITIVE_KEYS | {
    "custom_field", "Token", "ROOT_TOKEN", "token", "client_token", "jwt", "key", "keys",
    "share", "shares", "password", "secret", "keys_base64", "authorization", "x-vault-token",
    "vault_token", "unseal_keys_b64", "unseal_keys_hex", "keys_hex", "recovery_keys_b64",
    "private_key", "api_key", "identity", "age_identity", "clientToken", "X-Vault-Token",
    "privateKey", "APIKey", "db_password", "fingerprint_key", "secrets", "credentials",
    "token_accessor",
})


def _configure(log_format: str = "json") -> io.StringIO:
    stream = io.StringIO()
    telemetry.configure(
        service_name="t", service_version="1", log_format=log_format,  # type: ignore[arg-type]
        sensitive_keys=("custom_field",), span_exporter=InMemorySpanExporter(), stream=stream,
    )
    return stream


def _render(log_format: str, **fields: object) -> str:
    stream = _configure(log_format)
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
@pytest.mark.parametrize("key", MUST_REDACT)
def test_sensitive_keys_are_redacted_at_any_depth(log_format: str, key: str) -> None:
    for nesting in _nestings(key):
        assert isinstance(nesting, dict)
        line = _render(log_format, **nesting)
        assert SECRET not in line, (key, nesting)
        assert REDACTED in line


def test_a_vault_init_reply_is_redacted_whole() -> None:
    reply = {"keys": [SECRET], "keys_base64": [SECRET], "unseal_keys_b64": [SECRET],
             "unseal_keys_hex": [SECRET], "root_token": SECRET,
             "auth": {"client_token": SECRET, "accessor": SECRET}}
    line = _render("json", reply=reply)
    assert SECRET not in line
    assert set(json.loads(line)["reply"]) == set(reply)  # the shape stays readable


@pytest.mark.parametrize("key", [
    "path", "token_ttl", "data_key_names", "secret_name", "share_count", "threshold",
    "key_names", "monkey", "keyword", "tokenizer", "replica", "namespace", "inconsistent",
])
def test_other_keys_stay_readable(key: str) -> None:
    line = _render("json", **{key: "visible-value"})
    assert json.loads(line)[key] == "visible-value"


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_a_foreign_exception_message_is_withheld(log_format: str) -> None:
    stream = _configure(log_format)
    log = structlog.get_logger()
    try:
        int(SECRET)  # ValueError: invalid literal for int() with base 10: 's3cr3t-...'
    except ValueError:
        log.exception("parsing failed")
    try:
        {"a": 1}[SECRET]
    except KeyError as exc:
        log.error("lookup failed", exc_info=exc)
    try:
        try:
            raise RuntimeError(SECRET)
        except RuntimeError as inner:
            raise KubeError(status=500, reason="InternalError", message="boom", method="GET",
                            path="/api/v1/namespaces/app/secrets/web") from inner
    except KubeError:
        log.warning("chained", exc_info=True)
    out = stream.getvalue()
    assert SECRET not in out
    # Where it happened stays visible: the type, the frames, and our own exception's message.
    assert "ValueError: (message withheld" in out
    assert "KeyError: (message withheld" in out
    assert "RuntimeError: (message withheld" in out
    assert "/api/v1/namespaces/app/secrets/web" in out  # KubeError's own message
    assert "direct cause" in out
    assert "test_redaction.py" in out and "int(SECRET)" in out  # the frame and its source line


def test_an_exception_group_shows_each_exception_without_foreign_messages() -> None:
    stream = _configure()
    try:
        raise ExceptionGroup("tasks", [ValueError(SECRET), KubeError(
            status=403, reason="Forbidden", message="no", method="GET", path="/api/v1/x")])
    except ExceptionGroup as group:
        structlog.get_logger().error("tasks failed", exc_info=group)
    rendered = json.loads(stream.getvalue())["exception"]
    assert SECRET not in rendered
    assert "ValueError: (message withheld" in rendered and "403 Forbidden" in rendered


def test_exception_text_is_rendered_before_redaction() -> None:
    # A sensitive field inside an exception's rendering cannot come back after the redactor:
    # the exception is rendered first, and the redactor then sees every field there is.
    _configure()
    processors = structlog.get_config()["processors"]
    names = [getattr(p, "__name__", type(p).__name__) for p in processors]
    assert names.index("render_exceptions") < names.index("Redactor")
    assert "format_exc_info" not in names


@pytest.mark.parametrize("method", ["debug", "info", "warning", "error", "critical", "exception"])
def test_positional_arguments_are_never_interpolated(method: str) -> None:
    stream = io.StringIO()
    telemetry.configure(service_name="t", service_version="1", log_level="debug",
                        span_exporter=InMemorySpanExporter(), stream=stream)
    log = structlog.get_logger().bind(path="kv/app")
    getattr(log, method)("read %s from %s", SECRET, "kv/app")
    log.log(20, "via log %s", SECRET)
    log.info("mapping %(value)s", {"value": SECRET})
    out = stream.getvalue()
    assert SECRET not in out
    first = json.loads(out.splitlines()[0])
    assert first["event"] == "read %s from %s" and first["positional_args_dropped"] == 2


async def test_async_methods_do_not_interpolate_either() -> None:
    stream = _configure()
    log = structlog.get_logger()
    await log.ainfo("read %s", SECRET)
    await log.aerror("read %s", SECRET)
    await log.alog(30, "read %s", SECRET)
    out = stream.getvalue()
    assert SECRET not in out and out.count("positional_args_dropped") == 3


def test_keyword_fields_still_render() -> None:
    line = json.loads(_render("json", path="kv/app", version=3))
    assert line["event"] == "event" and line["path"] == "kv/app" and line["version"] == 3
    assert "positional_args_dropped" not in line
