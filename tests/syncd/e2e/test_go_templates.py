"""A VSO manifest's Go templates render here as VSO renders them (issue 13, item 3).

The VaultStaticSecret is written as VSO's "Secret data transformation" page describes one
(``.Secrets``, ``.Metadata``, ``.Annotations``, ``.Labels``, ``get``, ``printf``, ``range``,
whitespace trimming, a ``define`` shared by the templates of one resource), applied with only
``apiVersion`` changed, and the Secret is the one VSO writes. Jinja2 still works behind its
marker line; a template error is a condition naming the template, the line and the kind.
"""

from __future__ import annotations

import base64
from typing import Any

from syncd.templating import JINJA2_MARKER
from tests.syncd.e2e.world import APP_NS, GROUP_VERSION, World

#: The templates, as a VSO user writes them.
TEMPLATES: dict[str, Any] = {
    # VSO's documented examples, one per input.
    "password": '{{- printf "password=%s" (get .Secrets "password") -}}',
    "host": '{{- printf "host=%s" (get .Annotations "myapp.config/host") -}}',
    "app": '{{- printf "appType=%s" (get .Labels "appType") -}}',
    "version": "{{ .Metadata.version }}",
    # Variables, a pipeline into printf, and a Sprig function.
    "url": ('{{- $user := get .Secrets "username" -}}\n'
            '{{- $host := get .Annotations "myapp.config/host" -}}\n'
            '{{- printf "postgresql://%s:%s@%s:%v/app" $user (get .Secrets "password") $host '
            '.Secrets.port -}}'),
    # Range over a map: sorted keys, as Go ranges over maps.
    "app.properties": ("{{- range $k, $v := .Secrets }}\n"
                       "{{ $k }}={{ $v }}\n"
                       "{{- end }}\n"),
    "password.b64": '{{ get .Secrets "password" | b64enc }}',
    # A definition in one template is callable from the others of the same resource.
    "helpers": '{{- define "dsn" -}}{{ .Secrets.username }}@{{ .Labels.appType }}{{- end -}}',
    "dsn": '{{ template "dsn" . }}',
    # A template is callable by its name.
    "greeting": {"name": "greet", "text": "hello {{ .Labels.appType }}"},
    "call": '{{ template "greet" . }}!',
    # Go's printing of nested values and of a key that is not there.
    "options": "{{ .Secrets.options }} {{ .Secrets.missing }}",
    "ssl": "{{ if .Secrets.options.ssl }}require{{ else }}disable{{ end }}",
}


def _vso_manifest(name: str, templates: dict[str, Any]) -> dict[str, object]:
    return {
        "apiVersion": GROUP_VERSION,  # the only change from the VSO manifest
        "kind": "VaultStaticSecret",
        "metadata": {"name": name, "namespace": APP_NS,
                     "labels": {"appType": "postgres"},
                     "annotations": {"myapp.config/host": "db.example.internal"}},
        "spec": {
            "type": "kv-v2", "mount": "secret", "path": "kv-secret/info",
            "refreshAfter": "1s",
            "destination": {
                "name": name, "create": True,
                "transformation": {
                    "excludes": [".*"], "excludeRaw": True,
                    "templates": {key: text if isinstance(text, dict) else {"text": text}
                                  for key, text in templates.items()},
                },
            },
        },
    }


async def test_a_vso_manifest_with_go_templates_syncs_as_in_vso(world: World) -> None:
    user, password = world.value("user"), world.value("password")
    version = await world.write_kv("kv-secret/info", {
        "username": user, "password": password, "port": 5432, "options": {"ssl": True}})
    world.apply(_vso_manifest("vso-app", TEMPLATES))
    world.start_syncd()

    data = await world.synced("vso-app")
    assert data == {
        "password": f"password={password}",
        "host": "host=db.example.internal",
        "app": "appType=postgres",
        "version": str(version),
        "url": f"postgresql://{user}:{password}@db.example.internal:5432/app",
        # Each iteration writes "\n" and "k=v": {{- end }} trims the newline after the pair.
        "app.properties": f"\noptions=map[ssl:true]\npassword={password}\nport=5432\n"
                          f"username={user}\n",
        "password.b64": base64.b64encode(password.encode()).decode(),
        "helpers": "",
        "dsn": f"{user}@postgres",
        "greeting": "hello postgres",
        "call": "hello postgres!",
        "options": "map[ssl:true] <no value>",
        "ssl": "require",
    }

    rotated = world.value("rotated")
    await world.write_kv("kv-secret/info", {
        "username": user, "password": rotated, "port": 5432, "options": {"ssl": False}})
    await world.eventually(
        lambda: (world.secret_data("vso-app") or {}).get("password") == f"password={rotated}",
        message="the Go templates re-rendered on rotation")
    data = world.secret_data("vso-app") or {}
    assert data["ssl"] == "disable" and data["version"] == str(version + 1)


async def test_jinja2_behind_its_marker_and_go_errors_as_conditions(world: World) -> None:
    user = world.value("user")
    await world.write_kv("kv-secret/info", {"username": user, "port": 5432})
    world.apply(_vso_manifest("jinja", {
        "dsn": JINJA2_MARKER + "\npostgres://{{ secrets.username }}:{{ secrets.port + 1 }}"}))
    # Go refuses these when it parses them (undefined function, a literal piped into) ...
    world.apply(_vso_manifest("undefined-function", {
        "out": "line one\n{{ .Secrets.username | nosuch }}"}))
    world.apply(_vso_manifest("bad-pipeline", {"out": '{{ .Secrets.username | "x" }}'}))
    world.apply(_vso_manifest("unclosed", {"out": "a\nb\n{{ .Secrets.username "}))
    # ... and these when they run: the message has the kind and line, never the value.
    world.apply(_vso_manifest("wrong-type", {"out": "\n\n{{ .Secrets.port | upper }}"}))
    world.apply(_vso_manifest("arg-count", {"out": "{{ upper .Secrets.username 1 }}"}))
    world.start_syncd()

    assert await world.synced("jinja") == {"dsn": f"postgres://{user}:5433"}

    at = "spec.destination.transformation.templates[out].text"
    for name, message in {
        "undefined-function": f'{at}: template syntax error on line 2: function "nosuch" '
                              "not defined",
        "bad-pipeline": f"{at}: template syntax error on line 1: non executable command in "
                        "pipeline stage 2",
        "unclosed": f"{at}: template syntax error on line 3: unclosed action",
    }.items():
        found = await world.wait_condition(name, "Ready", status="False", reason="InvalidSpec")
        assert message in found["message"], (name, found)
        assert world.secret(name) is None
    for name, message in {
        "wrong-type": "key 'out': template failed: wrong type for value; expected string; "
                      "got json.Number (line 3)",
        "arg-count": "key 'out': template failed: wrong number of args for upper: want 1 got 2 "
                     "(line 1)",
    }.items():
        found = await world.wait_condition(name, "Ready", status="False",
                                           reason="InvalidSecretData")
        assert found["message"] == message, (name, found)
        assert user not in found["message"]
        assert world.secret(name) is None
