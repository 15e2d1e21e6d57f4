"""Go's JSON as VSO reads and writes it (syncd/gojson.py): numbers as Vault wrote them, floats
computed here as Go writes a float64, and bytes that are not UTF-8 as Go coerces them."""

from __future__ import annotations

import pytest

from syncd import gojson
from syncd.gotemplate.values import go_bytes, go_runes, go_string


@pytest.mark.parametrize("text", ["1.0", "1e21", "1E+2", "-0", "0.1", "1.50", "1e400", "-2.5e-8"])
def test_a_number_from_vault_is_written_as_vault_wrote_it(text: str) -> None:
    value = gojson.loads(f'{{"n":{text}}}')
    assert gojson.dumps(value) == f'{{"n":{text}}}'
    assert gojson.encode([value["n"]]) == f"[{text}]"


def test_integers_stay_exact_integers() -> None:
    value = gojson.loads('{"big":12345678901234567890,"small":7}')
    assert type(value["big"]) is int and value["big"] == 12345678901234567890
    assert gojson.dumps(value) == '{"big":12345678901234567890,"small":7}'


@pytest.mark.parametrize(("number", "go"), [
    (1.0, "1"), (1e21, "1e+21"), (1e20, "100000000000000000000"), (1e-7, "1e-7"),
    (1.5e-7, "1.5e-7"), (0.000001, "0.000001"), (-0.0, "-0"), (0.1, "0.1"), (123.0, "123"),
    (1.5e300, "1.5e+300"),
])
def test_a_float_computed_here_is_written_as_go_writes_a_float64(number: float, go: str) -> None:
    assert gojson.dumps(number) == go


def test_nan_is_refused() -> None:
    with pytest.raises(ValueError):
        gojson.dumps([float("nan")])


def test_each_byte_that_is_not_utf8_is_written_as_a_replacement_character() -> None:
    text = go_string(b"\xff\xc3\xa9\xe2\x82A")
    assert gojson.dumps(text) == '"\\ufffd\u00e9\\ufffd\\ufffdA"'
    # Two bytes that are UTF-8 together, made apart, are one character.
    assert gojson.dumps(go_string(b"\xc3") + go_string(b"\xa9")) == '"\u00e9"'
    assert gojson.dumps({"k": "<&>\u2028"}) == '{"k":"\\u003c\\u0026\\u003e\\u2028"}'


def test_go_strings_carry_any_bytes() -> None:
    data = bytes(range(256))
    assert go_bytes(go_string(data)) == data
    assert go_runes(go_string(b"a\xffb")) == "a\ufffdb"
    assert go_bytes("\ud800") == "\ufffd".encode()  # no byte stands for it
