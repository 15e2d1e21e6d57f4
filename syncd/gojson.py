"""JSON as VSO reads and writes it: Vault's numbers kept as written, Go's ``json.Marshal`` bytes.

VSO reads Vault through ``hashicorp/vault/api``, whose ``ParseSecret`` decodes with
``UseNumber`` (``sdk/helper/jsonutil``): a number is a ``json.Number``, its text, and
``json.Marshal`` writes that text back unchanged (VSO's ``marshalJSON`` in
``internal/helpers/secrets.go`` for a value that is not a string, and for ``_raw``). So a KV
value ``1.0`` becomes the Secret bytes ``1.0``, ``1e21`` stays ``1e21``, ``-0`` stays ``-0``.
Python's ``json`` would hand back ``1e+21`` and ``0``: :func:`loads` keeps each number that is
not a plain integer as a :class:`Number`, a float that remembers its text, and :func:`dumps`
writes that text.

:func:`dumps` is ``json.Marshal``: compact, map keys sorted, ``<``, ``>``, ``&``, U+2028 and
U+2029 escaped, a float computed here written as Go writes a ``float64`` (``1``, not ``1.0``;
``1e+21``), and a string's bytes that are not UTF-8 (carried in a ``str`` as
``surrogateescape`` does, see :mod:`syncd.gotemplate.values`) each written ``\\ufffd``, as Go
coerces a string to valid UTF-8. Standard library only: the template worker imports it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any


class Number(float):
    """A number from Vault's JSON that Python would not write back as Vault wrote it (a
    fraction, an exponent, ``-0``): its value, for arithmetic, and its ``text``, for output."""

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> Number:
        number = super().__new__(cls, text)  # 1e400 is inf: only its text is ever written
        number.text = text
        return number

    def __repr__(self) -> str:
        return self.text

    __str__ = __repr__

    def __reduce__(self) -> tuple[Any, ...]:  # copy.deepcopy keeps the text
        return (Number, (self.text,))


def _parse_int(text: str) -> int | Number:
    return Number(text) if text == "-0" else int(text)


def loads(text: str | bytes) -> Any:
    """``json.loads``, numbers as Vault keeps them: an integer as ``int`` (exact, however long),
    anything else as a :class:`Number`."""
    return json.loads(text, parse_float=Number, parse_int=_parse_int)


def go_float(value: float) -> str:
    """How Go's ``json.Marshal`` writes a ``float64`` (``encoding/json``'s ``floatEncoder``);
    a :class:`Number` as its text."""
    if isinstance(value, Number):
        return value.text
    if not math.isfinite(value):
        raise ValueError("json: unsupported value (NaN or infinity)")
    if value == 0:
        return "-0" if math.copysign(1, value) < 0 else "0"
    size = abs(value)
    if size < 1e-6 or size >= 1e21:
        # Go: 'e' format, shortest digits, and a two-digit exponent cut to one: 1e-07, 1e+21.
        mantissa, _, exponent = repr(value).partition("e")
        if not exponent:  # repr wrote it plainly (never for these sizes, kept for safety)
            return repr(value)
        sign, digits = exponent[0], exponent[1:].lstrip("0") or "0"
        return f"{mantissa.removesuffix('.0')}e{sign}{digits}"
    text = format(Decimal(repr(value)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


#: A lone surrogate: for U+DC80 to U+DCFF, a byte that is not UTF-8 (surrogateescape);
#: any other can only be text no UTF-8 can encode. Either way Go writes U+FFFD.
_SURROGATE = re.compile("[\ud800-\udfff]")
_NOT_A_BYTE = re.compile("[\ud800-\udc7f\udd00-\udfff]")


def _valid_utf8(text: str) -> str:
    """``text`` (JSON out) with each byte that is not UTF-8 written ``\\ufffd`` (Go's
    ``encodeState.string``: one per byte). Only strings hold surrogates, so this is safe."""
    if not _SURROGATE.search(text):
        return text
    text = _NOT_A_BYTE.sub(lambda m: "\\ufffd", text)
    # Bytes that only look invalid one by one (two escaped halves of "é") are valid together.
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape")
    return _SURROGATE.sub(lambda m: "\\ufffd", text)


def _has_float(value: Any) -> bool:
    # Called on every render (``_raw``): a loop over the values, no generator or recursion
    # for the usual flat map of strings.
    pending = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is str or kind is int or kind is bool or item is None:
            continue
        if isinstance(item, float):
            return True
        if isinstance(item, Mapping):
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
    return False


def dumps(value: Any, *, escape_html: bool = True, indent: str | None = None,
          sort_keys: bool = True) -> str:
    """``value`` as Go's ``json.Marshal`` (``indent``: ``MarshalIndent``) writes it; the bytes
    are its UTF-8. Raises ``ValueError`` for NaN or an infinity computed here."""
    text = encode(value, indent=indent, sort_keys=sort_keys)
    if escape_html:
        text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    if not text.isascii():
        text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
        text = _valid_utf8(text)
    return text


def encode(value: Any, *, indent: str | None = None, sort_keys: bool = False) -> str:
    """``value`` as JSON, floats as :func:`go_float` writes them, strings as they are
    (surrogates included): what the template worker's frames carry."""
    separators = (",", ": ") if indent is not None else (",", ":")
    if not _has_float(value):  # the usual case (strings, integers): the C encoder
        return json.dumps(value, ensure_ascii=False, separators=separators, indent=indent,
                          sort_keys=sort_keys, allow_nan=False)
    # The C encoder writes float.__repr__ whatever the subclass: the pure-Python one takes
    # the float writer as an argument.
    encoder = json.JSONEncoder(ensure_ascii=False, separators=separators, indent=indent,
                               sort_keys=sort_keys, allow_nan=False)
    iterencode = json.encoder._make_iterencode(  # type: ignore[attr-defined]
        {}, encoder.default, json.encoder.encode_basestring, indent, go_float,
        encoder.key_separator, encoder.item_separator, sort_keys, False, True)
    return "".join(iterencode(value, 0))
