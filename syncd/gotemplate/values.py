"""Go values as Python holds them, and Go's ``fmt`` printing of them.

Data reaches a template as VSO's does: decoded from Vault's JSON, so objects are
``map[string]interface{}`` (dict), arrays ``[]interface{}`` (list), strings, booleans, nil
(None), and numbers are ``json.Number``, which Go keeps as their text: :class:`JSONNumber`, a
``str`` that prints as written and compares equal to the string of its text, as it does in Go.
What a template computes is an ``int`` (int64), ``float`` (float64), ``bool`` or ``str``.

A Go string is bytes, not text: ``b64dec`` of ``//79`` is the three bytes ff fe fd, and VSO
writes them to the Secret as they are. A Go string is held here as a ``str`` whose bytes that
are not UTF-8 are carried as ``surrogateescape`` does (byte 0xff is U+DCFF): :func:`go_bytes`
gives the bytes back, and the functions that look at bytes (``len``, ``b64enc``, the hashes,
``substr``...) go through it. What ranges over runes sees U+FFFD for each such byte, as Go
does (:func:`go_runes`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from syncd.gotemplate.errors import FuncError


class JSONNumber(str):
    """Go's ``json.Number``: a number from JSON, kept as its text."""

    __slots__ = ()


class Int64(int):
    """A Go ``int64`` (what Sprig's arithmetic returns), as opposed to a template's ``int``
    constants: Sprig's ``duration`` takes the one and ignores the other. It wraps around as
    Go's does, which also keeps repeated multiplication from growing without bound."""

    __slots__ = ()

    def __new__(cls, value: int = 0) -> Int64:
        return super().__new__(cls, (int(value) + 2**63) % 2**64 - 2**63)


class Struct:
    """A Go struct value: fields by name (a missing field is an error, unlike a map key)."""

    __slots__ = ("fields", "json_names", "type_name")

    def __init__(self, type_name: str, fields: Mapping[str, Any], *,
                 json_names: Mapping[str, str] | None = None) -> None:
        self.type_name = type_name
        self.fields = dict(fields)
        #: Field name to its JSON name (its ``json`` tag); "NAME,omitempty" omits it if empty.
        self.json_names = dict(json_names or {})


def go_bytes(text: str) -> bytes:
    """The bytes of Go string ``text``. A surrogate that stands for no byte (only Jinja can
    make one) is U+FFFD, the rune Go writes for an invalid one."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return _NOT_A_BYTE.sub("\ufffd", text).encode("utf-8", "surrogateescape")


def go_string(data: bytes) -> str:
    """``string(data)`` in Go: any bytes."""
    return data.decode("utf-8", "surrogateescape")


_NOT_A_BYTE = re.compile("[\ud800-\udc7f\udd00-\udfff]")
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


def go_runes(text: str) -> str:
    """``text`` as Go's ``for range`` and ``strings.Map`` see it: each byte that is not part
    of valid UTF-8 is U+FFFD (one per byte, as ``utf8.DecodeRuneInString`` reads it)."""
    if text.isascii():
        return text
    return _ESCAPED_BYTE.sub("\ufffd", go_string(go_bytes(text)))


def from_json(value: Any) -> Any:
    """``value`` (as Python's json module decodes it) as Go decodes JSON with UseNumber."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):  # a float from Vault is a gojson.Number: its text
        return JSONNumber(str(value) if isinstance(value, int) else repr(value))
    if isinstance(value, Mapping):
        return {str(k): from_json(v) for k, v in value.items()}
    if isinstance(value, Sequence):
        return [from_json(v) for v in value]
    return value


def type_name(value: Any) -> str:
    """Go's name for the type of ``value``."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, JSONNumber):
        return "json.Number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Int64):
        return "int64"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, Struct):
        return value.type_name
    if isinstance(value, Mapping):
        return "map[string]interface {}"
    if isinstance(value, StringList):
        return "[]string"
    if isinstance(value, list | tuple):
        return "[]interface {}"
    if hasattr(value, "go_fields"):
        return "*semver.Version"
    if hasattr(value, "go_methods"):
        return "time.Time"
    if callable(value):
        return "func"
    return type(value).__name__


class StringList(list[str]):
    """A Go ``[]string`` (what ``keys``, ``split`` and ``sortAlpha`` return)."""

    __slots__ = ()


def truth(value: Any) -> bool:
    """Go's ``template.IsTrue``: the zero value of its type is false, and nil."""
    if value is None:
        return False
    if isinstance(value, Struct):
        return True
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str | Mapping | list | tuple):
        return len(value) > 0
    return True


def format_float(value: float, verb: str = "g", precision: int = -1) -> str:
    """``strconv.FormatFloat(value, verb, precision, 64)`` for verbs g, e, f."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if verb == "f":
        if precision < 0:
            text = _plain(Decimal(repr(value)))
            return text
        return f"{value:.{precision}f}"
    if verb == "e":
        if precision < 0:
            digits, exp = _shortest(value)
            mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
            sign = "-" if math.copysign(1, value) < 0 else ""
            return f"{sign}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
        text = f"{value:.{precision}e}"
        mantissa, _, exp_text = text.partition("e")
        exp = int(exp_text)
        return f"{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    # g
    if precision < 0:
        digits, exp = _shortest(value)
        if exp < -4 or exp >= 6:
            return format_float(value, "e", -1)
        return _plain(Decimal(repr(value)))
    text = f"{value:.{precision or 1}g}"
    if "e" in text:
        mantissa, _, exp_text = text.partition("e")
        exp = int(exp_text)
        return f"{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    return text


def _shortest(value: float) -> tuple[str, int]:
    """The shortest decimal digits that round-trip ``value``, and its decimal exponent."""
    _, digits, exponent = Decimal(repr(abs(value))).as_tuple()
    text = "".join(map(str, digits)).rstrip("0") or "0"
    stripped = len("".join(map(str, digits))) - len("".join(map(str, digits)).lstrip("0"))
    text = text.lstrip("0") or "0"
    exp = len(digits) - stripped + int(exponent) - 1 if text != "0" else 0
    return text, exp


def _plain(value: Decimal) -> str:
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text if text != "-0" else "-0"


def sprint_value(value: Any, *, top: bool = True) -> str:
    """``fmt.Sprint(value)`` (%v)."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # %v is %g with the shortest digits: 1e+06, not 1000000.
        return format_float(value)
    if isinstance(value, Struct):
        inner = " ".join(sprint_value(v, top=False) for v in value.fields.values())
        # fmt prints a pointer to a struct as &{...} at the top, its address when nested.
        pointer = "&" if value.type_name.startswith("*") and top else ""
        return pointer + "{" + inner + "}"
    if isinstance(value, Mapping):
        items = " ".join(f"{sprint_value(k, top=False)}:{sprint_value(value[k], top=False)}"
                         for k in sorted(value, key=_sort_key))
        return f"map[{items}]"
    if isinstance(value, list | tuple):
        return "[" + " ".join(sprint_value(v, top=False) for v in value) + "]"
    if isinstance(value, bytes):
        return "[" + " ".join(str(b) for b in value) + "]"
    stringer = getattr(value, "go_string", None)  # Go's fmt.Stringer
    if callable(stringer):
        return str(stringer())
    return f"%!v({type_name(value)})"


def _sort_key(key: Any) -> tuple[int, Any]:
    return (0, key) if isinstance(key, str) else (1, str(key))


def sprint(*values: Any) -> str:
    """``fmt.Sprint``: a space between operands when neither is a string."""
    out: list[str] = []
    for i, value in enumerate(values):
        if i and not isinstance(value, str) and not isinstance(values[i - 1], str):
            out.append(" ")
        out.append(sprint_value(value))
    return "".join(out)


def sprintln(*values: Any) -> str:
    return " ".join(sprint_value(v) for v in values) + "\n"


_VERB = re.compile(r"%([-+# 0]*)(\*|\d+)?(?:\.(\*|\d*))?([a-zA-Z%])")
#: Widths and precisions larger than this are refused (they only allocate).
MAX_WIDTH = 4096


def sprintf(format_: str, *args: Any) -> str:
    """``fmt.Sprintf`` for the verbs templates use: v s q d x X o b c e E f F g G t T %."""
    out: list[str] = []
    index = 0
    pos = 0
    while True:
        match = _VERB.search(format_, pos)
        if match is None:
            out.append(format_[pos:])
            break
        out.append(format_[pos:match.start()])
        pos = match.end()
        flags, width_text, precision_text, verb = match.groups()
        if verb == "%":
            out.append("%")
            continue
        width = precision = None
        if width_text == "*":
            if index < len(args) and isinstance(args[index], int):
                width = args[index]
            index += 1
        elif width_text:
            width = int(width_text)
        if precision_text == "*":
            if index < len(args) and isinstance(args[index], int):
                precision = args[index]
            index += 1
        elif precision_text is not None:
            precision = int(precision_text or "0")
        if (width is not None and abs(width) > MAX_WIDTH) or \
                (precision is not None and abs(precision) > MAX_WIDTH):
            raise FuncError(f"a width or precision above {MAX_WIDTH} is refused")
        if index >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[index]
        index += 1
        out.append(_pad(_format_one(verb, arg, flags, precision), width, flags, verb, arg))
    if index < len(args):
        extra = ", ".join(f"{type_name(a)}={sprint_value(a)}" for a in args[index:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _pad(text: str, width: int | None, flags: str, verb: str, arg: Any) -> str:
    if width is None or len(text) >= abs(width):
        return text
    if "-" in flags or width < 0:
        return text.ljust(abs(width))
    if "0" in flags and verb in "dxXobeEfFgG" and isinstance(arg, int | float) \
            and not isinstance(arg, bool):
        sign = text[0] if text[:1] in "+-" else ""
        return sign + text[len(sign):].rjust(width - len(sign), "0")
    return text.rjust(width)


def _bad(verb: str, arg: Any) -> str:
    return f"%!{verb}({type_name(arg)}={sprint_value(arg)})"


def _format_one(verb: str, arg: Any, flags: str, precision: int | None) -> str:
    if verb == "T":
        return type_name(arg)
    if verb == "v":
        if isinstance(arg, float) and precision is not None:
            return format_float(arg, "g", precision)
        if "+" in flags and isinstance(arg, int | float) and not isinstance(arg, bool) \
                and arg >= 0:
            return "+" + sprint_value(arg)
        return sprint_value(arg)
    if arg is None:
        return f"%!{verb}(<nil>)"
    if verb == "t":
        return sprint_value(arg) if isinstance(arg, bool) else _bad(verb, arg)
    if isinstance(arg, bool):
        return _bad(verb, arg)
    if verb in "sq":
        if isinstance(arg, str):
            text = str.__str__(arg)
            if precision is not None:
                text = text[:precision]
            return go_quote(text) if verb == "q" else text
        if verb == "s" and isinstance(arg, Mapping | list | tuple):
            return sprint_value(arg)
        if verb == "q" and isinstance(arg, int):
            return "'" + go_quote(chr(arg))[1:-1].replace("'", "\\'") + "'"
        return _bad(verb, arg)
    if isinstance(arg, int):
        sign = "+" if "+" in flags and arg >= 0 else (" " if " " in flags and arg >= 0 else "")
        if verb == "d":
            text = str(abs(arg))
        elif verb in "xX":
            text = format(abs(arg), "x" if verb == "x" else "X")
            if "#" in flags:
                text = ("0x" if verb == "x" else "0X") + text
        elif verb == "o":
            text = format(abs(arg), "o")
            if "#" in flags:
                text = "0" + text
        elif verb == "b":
            text = format(abs(arg), "b")
        elif verb == "c":
            # Go writes U+FFFD for what is no rune: a surrogate, or beyond U+10FFFF.
            return chr(arg) if 0 <= arg < 0x110000 and not 0xD800 <= arg < 0xE000 \
                else "\ufffd"
        elif verb in "eEfFgG":
            return _bad(verb, arg)
        else:
            return _bad(verb, arg)
        if precision is not None and len(text) < precision:
            text = text.rjust(precision, "0")
        return ("-" if arg < 0 else sign) + text
    if isinstance(arg, float):
        if verb in "eE":
            text = format_float(arg, "e", 6 if precision is None else precision)
        elif verb in "fF":
            text = format_float(arg, "f", 6 if precision is None else precision)
        elif verb in "gG":
            text = format_float(arg, "g", -1 if precision is None else precision)
        else:
            return _bad(verb, arg)
        if verb.isupper():
            text = text.upper()
        if "+" in flags and not text.startswith("-"):
            text = "+" + text
        return text
    if isinstance(arg, str) and verb in "xX":
        text = go_bytes(arg).hex()
        return text.upper() if verb == "X" else text
    return _bad(verb, arg)


#: Go's one-letter escapes, by the character they stand for.
ESCAPES = {"\n": "n", "\t": "t", "\r": "r", "\a": "a", "\b": "b", "\f": "f", "\v": "v",
           '"': '"', "\\": "\\"}


def go_quote(text: str) -> str:
    """``strconv.Quote``."""
    out = ['"']
    for c in go_string(go_bytes(text)):  # bytes that are valid UTF-8 together are runes
        if "\udc80" <= c <= "\udcff":  # a byte that is not UTF-8
            out.append(f"\\x{ord(c) - 0xdc00:02x}")
        elif c in ESCAPES:
            out.append("\\" + ESCAPES[c])
        elif not c.isprintable():
            code = ord(c)
            out.append(f"\\x{code:02x}" if code < 0x80 else
                       (f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"))
        else:
            out.append(c)
    out.append('"')
    return "".join(out)

