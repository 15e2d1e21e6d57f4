"""A template error says which template, which line and what kind of error; never a value, in
any disguise a template can give it (issue 10, item 4: ``{{ secrets[secrets.password|upper] }}``
put the upper-cased password into the Ready condition, an Event readable by ``view``, and the
log).

The templates are written by a namespace user through their own client.
"""

from __future__ import annotations

import base64
import json

from syncd.templating import JINJA2_MARKER
from tests.syncd.e2e.world import World

# name -> (Jinja2 template, what the condition says after "template failed: "); the marker is
# line 1.
JINJA = JINJA2_MARKER + "\n"
HOSTILE = {
    "upper": (JINJA + "{{ secrets[secrets.password | upper] }}",
              "undefined: a name computed from the data (not shown) (line 2)"),
    "reverse": (JINJA + "{# line 1 #}\n{{ secrets[secrets.password | reverse] }}",
                "undefined: a name computed from the data (not shown) (line 3)"),
    "b64": (JINJA + "{{ secrets[secrets.password | b64encode] }}",
            "undefined: a name computed from the data (not shown) (line 2)"),
    "attr": (JINJA + "{{ secrets | attr(secrets.password | title) }}",
             "undefined: a name computed from the data (not shown) (line 2)"),
    "format": (JINJA + "{{ (secrets.password | upper).format(x=1) }}",
               "a key or index that does not exist (line 2)"),
    "int": (JINJA + "{{ secrets.password | reverse | int(base=2) / 0 }}",
            "division by zero (line 2)"),
    "concat": (JINJA + "{{ (secrets.password | upper) + 1 }}",
               "an operation on a value of the wrong type (line 2)"),
}


def _disguises(value: str) -> set[str]:
    b64 = base64.b64encode(value.encode()).decode()
    return {value, value.upper(), value.lower(), value.title(), value[::-1],
            value.upper()[::-1], b64, b64.rstrip("="), "{" + value.upper()}


async def test_template_errors_show_no_value_in_any_disguise(world: World) -> None:
    value = world.value("disguised{x}")
    for form in _disguises(value):  # conftest.py looks for each of them everywhere, too
        world.secret_values.add(form)
    await world.write_kv("kv-secret/info", {"password": value})
    world.start_syncd()
    async with world.tenant() as tenant:
        for name, (text, _) in HOSTILE.items():
            await tenant.create_vss(name, destination={"name": name, "create": True,
                                                       "transformation": {"templates": {
                                                           "out": {"text": text}}}})
        for name, (_, kind) in HOSTILE.items():
            found = await world.wait_condition(name, "Ready", status="False",
                                               reason="InvalidSecretData")
            assert found["message"] == f"key 'out': template failed: {kind}", name
            [event] = await world.eventually(
                lambda name=name: world.events("InvalidSecretData", about=name, type="Warning"))
            assert event["message"] == found["message"]
            assert world.secret(name) is None  # nothing written

    shown = "\n".join([
        world.captured(),
        json.dumps(world.all_events()),
        json.dumps([v.get("status") for v in world.all_vss()]),
    ])
    assert '"event": "render failed"' in shown
    assert not [form for form in _disguises(value) if form in shown]
