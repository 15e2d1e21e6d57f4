"""The functions a template may call: Go's builtins and VSO's subset of Sprig.

VSO registers Sprig's ``HermeticTxtFuncMap`` restricted to an allow-list (``template/funcs.go``
in VSO v1.4.1); every name on that list is here, with Sprig's semantics (its documentation,
MIT). Nothing here reads files, the environment or the
network (Sprig's ``env`` and ``expandenv`` are not on VSO's list either).

Parameters are typed as in Go (:class:`Func`), so that ``upper .Secrets.port`` fails as it does
in VSO (a ``json.Number`` is not a ``string``), and ``.Secrets.missing | upper`` fails with
"invalid value; expected string". A function that fails raises :class:`FuncError` with fixed
words; Sprig's "must" variants and the others fail alike (Go turns a panic into an error).
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import json
import math
import posixpath
import random
import re
import time
import urllib.parse
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from syncd import gojson
from syncd.gotemplate import gotime, semver
from syncd.gotemplate.errors import FuncError
from syncd.gotemplate.values import (
    Int64,
    JSONNumber,
    StringList,
    Struct,
    go_bytes,
    go_quote,
    go_runes,
    go_string,
    sprint,
    sprint_value,
    sprintf,
    sprintln,
    truth,
    type_name,
)

#: The largest string or list a function may build (the Secret limit).
MAX_SIZE = 1024 * 1024


@dataclass(frozen=True)
class Func:
    """``fn`` with Go parameter kinds: a any, s string, i int, f float64, b bool,
    m map[string]interface{}, l []interface{}, S []string; ``variadic`` the kind of the rest."""

    fn: Callable[..., Any]
    params: str = ""
    variadic: str | None = None


_KIND_NAMES = {"s": "string", "i": "int", "f": "float64", "b": "bool",
               "m": "map[string]interface {}", "l": "[]interface {}", "S": "[]string"}


def check_args(function: Func, name: str, values: list[Any], *,
               literals: list[bool]) -> str | None:
    """Why ``values`` cannot be passed to ``function`` (Go's words), or None. Converts in
    place what Go converts (a nil map or slice)."""
    fixed = len(function.params)
    if function.variadic is None and len(values) != fixed:
        return f"wrong number of args for {name}: want {fixed} got {len(values)}"
    if function.variadic is not None and len(values) < fixed:
        return f"wrong number of args for {name}: want at least {fixed} got {len(values)}"
    for i, value in enumerate(values):
        kind = function.params[i] if i < fixed else function.variadic
        assert kind is not None
        if kind == "a":
            continue
        literal = literals[i] if i < len(literals) else False
        if value is None:
            if kind in "mlS":
                values[i] = {} if kind == "m" else []
                continue
            return f"invalid value; expected {_KIND_NAMES[kind]}"
        ok = {
            "s": isinstance(value, str) and not isinstance(value, JSONNumber),
            "i": isinstance(value, int) and not isinstance(value, bool),
            "f": isinstance(value, float) or (literal and isinstance(value, int)
            and not isinstance(value, bool)),
            "b": isinstance(value, bool),
            "m": isinstance(value, Mapping) and not isinstance(value, Struct),
            "l": isinstance(value, list | tuple) and not isinstance(value, StringList),
            "S": isinstance(value, StringList),
        }[kind]
        if not ok:
            if literal and kind == "i" and isinstance(value, float):
                return f"expected integer; found {sprint_value(value)}"  # written in the text
            return f"wrong type for value; expected {_KIND_NAMES[kind]}; got {type_name(value)}"
        if kind == "f":
            values[i] = float(value)
    return None


# -- conversions, as Sprig's (spf13/cast and strval)
def strval(value: Any) -> str:
    if isinstance(value, str):
        return str.__str__(value)
    return sprint_value(value)


def to_int(value: Any) -> int:
    """cast.ToInt64: 0 for what does not convert."""
    if value is None:
        return 0
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else 0
    if isinstance(value, str):
        text = str.__str__(value).strip()
        if isinstance(value, JSONNumber):
            try:
                return int(text)
            except ValueError:
                return 0
        if re.fullmatch(r"[-+]?\d+\.0*", text):
            text = text.split(".")[0]
        try:
            return int(text, 0)
        except ValueError:
            return 0
    return 0


def to_float(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool | int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(str.__str__(value))
        except ValueError:
            return 0.0
    return 0.0


def _list(value: Any, name: str) -> list[Any]:
    if isinstance(value, list | tuple):
        return list(value)
    raise FuncError(f"cannot {name} on a value of type {type_name(value)}")


def _strslice(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [strval(v) for v in value if v is not None]
    return [strval(value)]


def _bounded(text: str) -> str:
    if len(text) > MAX_SIZE:
        raise FuncError("a result larger than the 1 MiB Secret limit is refused")
    return text


def empty(value: Any) -> bool:
    return not truth(value) if not isinstance(value, Struct) else False


# -- Go's JSON encoding
def go_json(value: Any, *, escape_html: bool = True, indent: str | None = None) -> str:
    def convert(v: Any) -> Any:
        if isinstance(v, JSONNumber):
            return gojson.Number(str.__str__(v))
        if isinstance(v, Struct):
            out = {}
            for field_name, x in v.fields.items():
                json_name, _, option = v.json_names.get(field_name, field_name).partition(",")
                if option != "omitempty" or truth(x):
                    out[json_name] = convert(x)
            return out
        if isinstance(v, Mapping):  # Go sorts map keys; a struct keeps its field order
            return {str(k): convert(v[k]) for k in sorted(v, key=str)}
        if isinstance(v, list | tuple):
            return [convert(x) for x in v]
        if isinstance(v, float) and not math.isfinite(v):
            raise FuncError("json: unsupported value (NaN or infinity)")
        return v

    return gojson.dumps(convert(value), escape_html=escape_html, indent=indent,
                        sort_keys=False)


def from_json(text: str) -> Any:
    try:  # Go's decoder reads each byte that is not UTF-8 as U+FFFD
        return json.loads(go_runes(text))
    except ValueError:
        raise FuncError("the input is not valid JSON") from None


# -- the builtins of text/template
def _len(value: Any) -> int:
    if value is None:
        raise FuncError("len of nil pointer")
    if isinstance(value, str):
        return len(go_bytes(value))
    if isinstance(value, Mapping | list | tuple) and not isinstance(value, Struct):
        return len(value)
    raise FuncError(f"len of type {type_name(value)}")


def _index(item: Any, *indexes: Any) -> Any:
    if item is None:
        raise FuncError("index of untyped nil")
    for index in indexes:
        if item is None:
            raise FuncError("index of nil pointer")
        if isinstance(item, Mapping) and not isinstance(item, Struct):
            if not isinstance(index, str):
                raise FuncError(f"value has type {type_name(index)}; should be string")
            item = item.get(index)
        elif isinstance(item, list | tuple | str):
            if not isinstance(index, int) or isinstance(index, bool):
                raise FuncError(f"cannot index slice/array with type {type_name(index)}")
            sequence = go_bytes(item) if isinstance(item, str) else item
            if not 0 <= index < len(sequence):
                raise FuncError("index out of range")
            item = sequence[index]
        else:
            raise FuncError(f"can't index item of type {type_name(item)}")
    return item


def _basic(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    return "invalid" if value is None else "other"


def _eq(first: Any, *others: Any) -> bool:
    if not others:
        raise FuncError("missing argument for comparison")
    k1 = _basic(first)
    if isinstance(first, Mapping | list | tuple):
        raise FuncError(f"uncomparable type {type_name(first)}")
    for other in others:
        k2 = _basic(other)
        if k1 != k2:
            if first is not None and other is not None:
                raise FuncError("incompatible types for comparison")
            continue
        if k1 == "other" and isinstance(first, Mapping | list | tuple):
            raise FuncError(f"uncomparable type {type_name(first)}")
        if first == other:
            return True
    return False


def _lt(a: Any, b: Any) -> bool:
    ka, kb = _basic(a), _basic(b)
    if ka in ("bool", "invalid", "other") or kb in ("bool", "invalid", "other"):
        raise FuncError("invalid type for comparison")
    if ka != kb:
        raise FuncError("incompatible types for comparison")
    return bool(a < b)


def _html(*args: Any) -> str:
    text = args[0] if len(args) == 1 and isinstance(args[0], str) else sprint(*args)
    return (str.__str__(text).replace("&", "&amp;").replace("'", "&#39;").replace("<", "&lt;")
            .replace(">", "&gt;").replace('"', "&#34;").replace("\0", "\ufffd"))


def _js(*args: Any) -> str:
    text = args[0] if len(args) == 1 and isinstance(args[0], str) else sprint(*args)
    out = []
    for c in str.__str__(text):
        if c in "\\'\"":
            out.append("\\" + c)
        elif c in "<>&=":
            out.append(f"\\u{ord(c):04X}")
        elif c == "`":
            out.append("\\u0060")
        elif ord(c) < 0x20 or not c.isprintable():
            out.append(f"\\u{ord(c):04X}")
        else:
            out.append(c)
    return "".join(out)


def _urlquery(*args: Any) -> str:
    text = args[0] if len(args) == 1 and isinstance(args[0], str) else sprint(*args)
    return urllib.parse.quote_plus(str.__str__(text), safe="-_.~")


def _call(function: Any, *args: Any) -> Any:
    raise FuncError("call of a value that is not a function")


def _not(value: Any) -> bool:
    return not truth(value)


BUILTINS: dict[str, Func] = {
    "and": Func(lambda *a: a[-1], "a", "a"),
    "or": Func(lambda *a: a[-1], "a", "a"),
    "not": Func(_not, "a"),
    "len": Func(_len, "a"),
    "index": Func(_index, "a", "a"),
    "print": Func(lambda *a: _bounded(sprint(*a)), "", "a"),
    "printf": Func(lambda f, *a: _bounded(sprintf(f, *a)), "s", "a"),
    "println": Func(lambda *a: _bounded(sprintln(*a)), "", "a"),
    "eq": Func(_eq, "a", "a"),
    "ne": Func(lambda a, b: not _eq(a, b), "aa"),
    "lt": Func(_lt, "aa"),
    "le": Func(lambda a, b: _lt(a, b) or _eq(a, b), "aa"),
    "gt": Func(lambda a, b: not (_lt(a, b) or _eq(a, b)), "aa"),
    "ge": Func(lambda a, b: not _lt(a, b), "aa"),
    "html": Func(_html, "", "a"),
    "js": Func(_js, "", "a"),
    "urlquery": Func(_urlquery, "", "a"),
    "call": Func(_call, "a", "a"),
}


# -- Sprig: strings
def _abbrev_full(text: str, offset: int, width: int) -> str:
    if not text or width < 4 or len(text) <= width:
        return text
    offset = min(offset, len(text))
    if len(text) - offset < width - 3:
        offset = len(text) - (width - 3)
    if offset <= 4:
        return text[:width - 3] + "..."
    if width < 7:
        return text
    if offset + width - 3 < len(text):
        return "..." + _abbrev_full(text[offset:], 0, width - 3)
    return "..." + text[len(text) - (width - 3):]


def _words(text: str) -> list[str]:
    """Words as xstrings splits them for its case conversions."""
    return re.findall(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+", text)


def _camelcase(text: str) -> str:
    # xstrings.ToCamelCase: split on "_", capitalise each part's first letter.
    return "".join(part[:1].upper() + part[1:] for part in text.split("_") if part)


def _snakecase(text: str) -> str:
    return "_".join(w.lower() for w in _words(text))


def _kebabcase(text: str) -> str:
    return "-".join(w.lower() for w in _words(text))


def _title(text: str) -> str:
    # This and the next three range over runes in Go: each byte that is not UTF-8 is U+FFFD.
    out, previous = [], " "
    for c in go_runes(text):
        out.append(c.upper() if not (previous.isalnum() or previous == "_") else c)
        previous = c
    return "".join(out)


def _untitle(text: str) -> str:
    out, previous = [], " "
    for c in go_runes(text):
        out.append(c.lower() if previous.isspace() else c)
        previous = c
    return "".join(out)


def _swapcase(text: str) -> str:
    out, whitespace = [], True
    for c in go_runes(text):
        if c.isupper() or c.istitle():
            out.append(c.lower())
        elif c.islower():
            out.append(c.title() if whitespace else c.upper())
        else:
            out.append(c)
        whitespace = c.isspace()
    return "".join(out)


def _wrap_with(width: int, sep: str, text: str) -> str:
    width = max(width, 1)
    lines, line = [], ""
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return sep.join(lines)


def _trunc(count: int, text: str) -> str:
    data = go_bytes(text)  # Sprig slices the string: bytes, not runes
    if count < 0 and len(data) + count > 0:
        return go_string(data[len(data) + count:])
    if count >= 0 and len(data) > count:
        return go_string(data[:count])
    return text


def _substr(start: int, end: int, text: str) -> str:
    data = go_bytes(text)  # Sprig slices the string: bytes, not runes
    if start < 0:
        return go_string(data[:end])
    if end < 0 or end > len(data):
        return go_string(data[start:])
    return go_string(data[start:end])


def _repeat(count: int, text: str) -> str:
    if count < 0:
        raise FuncError("negative repeat count")
    if len(text) * count > MAX_SIZE:
        raise FuncError("a result larger than the 1 MiB Secret limit is refused")
    return text * count


def _indent(spaces: int, text: str) -> str:
    if spaces > 4096:
        raise FuncError("an indent above 4096 is refused")
    pad = " " * max(spaces, 0)
    return _bounded(pad + text.replace("\n", "\n" + pad))


def _split(sep: str, text: str, n: int = -1) -> dict[str, str]:
    parts = _go_split(text, sep, n)
    return {f"_{i}": part for i, part in enumerate(parts)}


def _go_split(text: str, sep: str, n: int = -1) -> list[str]:
    if n == 0:
        return []
    if sep == "":
        chars = list(text)
        if n > 0 and len(chars) > n:
            return [*chars[:n - 1], "".join(chars[n - 1:])]
        return chars
    return text.split(sep, n - 1) if n > 0 else text.split(sep)


def _quote(*values: Any) -> str:
    return " ".join(go_quote(strval(v)) for v in values if v is not None)


def _squote(*values: Any) -> str:
    return " ".join(f"'{strval(v)}'" for v in values if v is not None)


def _cat(*values: Any) -> str:
    return " ".join(sprint_value(v) for v in values if v is not None)


def _b64dec(text: str) -> str:
    try:
        return go_string(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError):
        return "illegal base64 data"


def _b32dec(text: str) -> str:
    try:
        return go_string(base64.b32decode(text))
    except (binascii.Error, ValueError):
        return "illegal base32 data"


def _go_regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error:
        raise FuncError("invalid regular expression") from None


def _go_expand(template: str) -> str:
    # Go's ${1} / $1 / ${name} into Python's \g<1> / \g<name>; $$ is a dollar.
    def convert(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(2)
        return f"\\g<{name}>"
    return re.sub(r"\$\$|\$\{(\w+)\}|\$(\w+)", convert, template.replace("\\", "\\\\"))


def _regex_replace(pattern: str, text: str, repl: str) -> str:
    regex = _go_regex(pattern)
    try:
        return _bounded(regex.sub(_go_expand(repl), text))
    except (re.error, IndexError):
        # Go expands an unknown group to nothing.
        return _bounded(regex.sub(lambda m: "", text))


def _regex_find_all(pattern: str, text: str, n: int) -> StringList:
    found = [m.group(0) for m in _go_regex(pattern).finditer(text)]
    return StringList(found if n < 0 else found[:n])


def _regex_split(pattern: str, text: str, n: int) -> StringList:
    if n == 0:
        return StringList()
    parts = _go_regex(pattern).split(text, maxsplit=n - 1 if n > 0 else 0)
    return StringList(parts)


# -- numbers
def _div(a: Any, b: Any) -> int:
    x, y = to_int(a), to_int(b)
    if y == 0:
        raise FuncError("integer divide by zero")
    q = abs(x) // abs(y)
    return q if (x >= 0) == (y >= 0) else -q


def _mod(a: Any, b: Any) -> int:
    x, y = to_int(a), to_int(b)
    if y == 0:
        raise FuncError("integer divide by zero")
    return x - _div(x, y) * y


def _round(value: Any, places: int, *options: float) -> float:
    half = options[0] if options else 0.5
    number = to_float(value)
    power = 10 ** places
    digit = number * power
    frac, _ = math.modf(digit)
    rounded = math.ceil(digit) if frac >= half else math.floor(digit)
    return float(rounded / power)


def _decimal_op(op: Callable[[Decimal, Decimal], Decimal]) -> Callable[..., float]:
    def run(first: Any, *rest: Any) -> float:
        try:
            total = Decimal(repr(to_float(first)))
            for value in rest:
                total = op(total, Decimal(repr(to_float(value))))
        except (InvalidOperation, ZeroDivisionError):
            raise FuncError("an invalid decimal operation") from None
        return float(total)
    return run


def _seq(*params: int) -> str:
    if len(params) == 1:
        start, stop, step = 1, params[0], 1 if params[0] >= 1 else -1
    elif len(params) == 2:
        start, stop = params
        step = 1 if stop >= start else -1
    elif len(params) == 3:
        start, step, stop = params
        if step == 0 or (stop - start) * step < 0:
            return ""
    else:
        return ""
    values = _until_step(start, stop + (1 if step > 0 else -1), step)
    return " ".join(str(v) for v in values)


def _until_step(start: int, stop: int, step: int) -> list[int]:
    if step == 0 or (stop - start) * step <= 0:
        return []
    count = (abs(stop - start) + abs(step) - 1) // abs(step)
    if count > MAX_SIZE:
        raise FuncError("a list larger than 1048576 elements is refused")
    return list(range(start, stop, step))


# -- lists
def _first(values: Any) -> Any:
    items = _list(values, "find first")
    return items[0] if items else None


def _last(values: Any) -> Any:
    items = _list(values, "find last")
    return items[-1] if items else None


def _has(needle: Any, haystack: Any) -> bool:
    if haystack is None:
        return False
    return any(needle == item and type(needle) is type(item)
               for item in _list(haystack, "find has"))


def _uniq(values: Any) -> list[Any]:
    out: list[Any] = []
    for item in _list(values, "find uniq"):
        if not any(item == seen for seen in out):
            out.append(item)
    return out


def _without(values: Any, *omit: Any) -> list[Any]:
    return [item for item in _list(values, "find without") if item not in omit]


def _append(values: Any, item: Any) -> list[Any]:
    return [*_list(values, "push"), item]


def _prepend(values: Any, item: Any) -> list[Any]:
    return [item, *_list(values, "prepend")]


def _concat(*lists: Any) -> list[Any]:
    out: list[Any] = []
    for values in lists:
        out.extend(_list(values, "concat"))
    return out


def _chunk(size: int, values: Any) -> list[list[Any]]:
    items = _list(values, "chunk")
    if size <= 0:
        raise FuncError("chunk size must be positive")
    return [items[i:i + size] for i in range(0, len(items), size)]


def _slice(values: Any, *indexes: Any) -> Any:
    items = _list(values, "slice")
    if not items:
        return None
    start = to_int(indexes[0]) if indexes else 0
    end = to_int(indexes[1]) if len(indexes) > 1 else len(items)
    if not 0 <= start <= end <= len(items):
        raise FuncError("slice bounds out of range")
    return items[start:end]


def _sort_alpha(values: Any) -> StringList:
    return StringList(sorted(_strslice(values)))


# -- dicts
def _dict(*pairs: Any) -> dict[str, Any]:
    items = list(pairs) + ([""] if len(pairs) % 2 else [])
    return {strval(items[i]): items[i + 1] for i in range(0, len(items), 2)}


def _get(values: dict[str, Any], key: str) -> Any:
    return values.get(key, "")


def _set(values: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    values[key] = value
    return values


def _unset(values: dict[str, Any], key: str) -> dict[str, Any]:
    values.pop(key, None)
    return values


def _merge(overwrite: bool) -> Callable[..., dict[str, Any]]:
    def merge_into(dst: dict[str, Any], src: Mapping[str, Any]) -> None:
        for key, value in src.items():
            if key in dst and isinstance(dst[key], dict) and isinstance(value, Mapping):
                merge_into(dst[key], value)
            elif key not in dst or overwrite or (empty(dst[key]) and not overwrite):
                if overwrite and empty(value) and key in dst:
                    continue
                dst[key] = copy.deepcopy(value)

    def merge(dst: dict[str, Any], *srcs: dict[str, Any]) -> dict[str, Any]:
        for src in srcs:
            merge_into(dst, src)
        return dst
    return merge


def _dig(*args: Any) -> Any:
    if len(args) < 3:
        raise FuncError("dig needs at least three arguments")
    *keys, default, values = args
    for key in keys:
        if not isinstance(values, Mapping) or strval(key) not in values:
            return default
        values = values[strval(key)]
    return values


def _url_parse(text: str) -> dict[str, Any]:
    parts = urllib.parse.urlsplit(text)
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    return {"scheme": parts.scheme, "host": parts.netloc.rpartition("@")[2],
            "hostname": parts.hostname or "", "path": parts.path, "query": parts.query,
            "opaque": "", "fragment": parts.fragment, "userinfo": userinfo}


def _url_join(values: dict[str, Any]) -> str:
    netloc = strval(values.get("host", "")) if values.get("host") is not None else ""
    if values.get("userinfo"):
        netloc = f"{strval(values['userinfo'])}@{netloc}"
    return urllib.parse.urlunsplit((strval(values.get("scheme") or ""), netloc,
                                    strval(values.get("path") or ""),
                                    strval(values.get("query") or ""),
                                    strval(values.get("fragment") or "")))


def _kind_of(value: Any) -> str:
    if value is None:
        return "invalid"
    if isinstance(value, Struct):
        return "ptr"
    if isinstance(value, Mapping):
        return "map"
    if isinstance(value, list | tuple):
        return "slice"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64" if isinstance(value, Int64) else "int"
    if isinstance(value, float):
        return "float64"
    return "func"


def _duration(seconds: Any) -> str:
    """Sprig's ``duration``: seconds as a string or an int64; anything else (an int constant
    too) is 0."""
    if isinstance(seconds, str) and not isinstance(seconds, JSONNumber):
        n = int(seconds) if re.fullmatch(r"[-+]?\d+", seconds) else 0
    elif isinstance(seconds, Int64):
        n = int(seconds)
    else:
        n = 0
    return _go_duration(n * 1_000_000_000)


_DURATION_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000,
                   "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}


def _parse_duration(text: str) -> int:
    """``time.ParseDuration`` in nanoseconds; 0 for what it refuses."""
    match = re.fullmatch(r"([-+]?)((?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+", text)
    if text in ("0", "+0", "-0"):
        return 0
    if match is None:
        return 0
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)", text):
        total += float(number) * _DURATION_UNITS[unit]
    return int(-total if text.startswith("-") else total)


def _ago(date: Any) -> str:
    """Sprig's ``ago``: the time since a Unix time in seconds, rounded to the second."""
    if isinstance(date, gotime.GoTime):
        return _go_duration(round(time.time() - date.dt.timestamp()) * 1_000_000_000)
    if isinstance(date, int) and not isinstance(date, bool):
        return _go_duration(round(time.time() - date) * 1_000_000_000)
    return "0s"


def _go_duration(nanos: int) -> str:
    """time.Duration.String."""
    if nanos == 0:
        return "0s"
    sign = "-" if nanos < 0 else ""
    nanos = abs(nanos)
    if nanos < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if nanos >= size:
                return sign + _go_fraction(nanos, size) + unit
    hours, rest = divmod(nanos, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    seconds = _go_fraction(rest, 1_000_000_000) + "s"
    out = f"{hours}h{minutes}m" if hours else (f"{minutes}m" if minutes else "")
    return sign + out + seconds


def _go_fraction(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    digits = str(frac).rjust(len(str(unit)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"


def _duration_round(value: Any) -> str:
    """Sprig's ``durationRound``: a duration string or int64 nanoseconds, in its largest
    unit."""
    if isinstance(value, str) and not isinstance(value, JSONNumber):
        nanos = _parse_duration(value)
    elif isinstance(value, Int64):
        nanos = int(value)
    elif isinstance(value, gotime.GoTime):
        nanos = int((time.time() - value.dt.timestamp()) * 1_000_000_000)
    else:
        nanos = 0
    sign = "-" if nanos < 0 else ""
    nanos = abs(nanos)
    second = 1_000_000_000
    for unit, size in (("y", 365 * 86400 * second), ("mo", 30 * 86400 * second),
                       ("d", 86400 * second), ("h", 3600 * second), ("m", 60 * second),
                       ("s", second)):
        if nanos > size:
            return f"{sign}{nanos // size}{unit}"
    return "0s"


_PEM = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.S)


def _pem_der(text: bytes) -> bytes | None:
    """The DER bytes of the first PEM block in ``text`` (Go's pem.Decode), or None."""
    match = _PEM.search(text.decode("latin-1"))
    if match is None:
        return None
    body = "".join(line for line in match[2].splitlines() if ":" not in line)
    try:
        return base64.b64decode(body, validate=False)
    except (binascii.Error, ValueError):
        return None


def _build_custom_cert(b64cert: str, b64key: str) -> Struct:
    """Sprig's ``buildCustomCert``: the PEM certificate and PKCS#1 key, base64-decoded, as
    ``.Cert`` and ``.Key``. Checked as far as the standard library can: each is a PEM block
    holding a DER sequence (Sprig also parses the X.509 certificate and the RSA key)."""
    try:
        cert = base64.b64decode(b64cert, validate=True)
    except (binascii.Error, ValueError):
        raise FuncError("unable to decode base64 certificate") from None
    try:
        key = base64.b64decode(b64key, validate=True)
    except (binascii.Error, ValueError):
        raise FuncError("unable to decode base64 private key") from None
    cert_der = _pem_der(cert)
    if cert_der is None:
        raise FuncError("unable to decode certificate")
    if not cert_der.startswith(b"\x30"):
        raise FuncError("error parsing certificate")
    key_der = _pem_der(key)
    if key_der is None:
        raise FuncError("unable to decode key")
    if not key_der.startswith(b"\x30"):
        raise FuncError("error parsing private key")
    return Struct("sprig.certificate", {"Cert": go_string(cert), "Key": go_string(key)})


def _fail(message: str) -> str:
    raise FuncError(message)


def _hash(algorithm: str) -> Callable[[str], str]:
    return lambda text: hashlib.new(algorithm, go_bytes(text)).hexdigest()


def _bcrypt(password: str) -> str:
    """Sprig's ``bcrypt``: Go's ``bcrypt.GenerateFromPassword`` at its DefaultCost (10), ``$2a$``.

    The ``bcrypt`` package (C, wheels for amd64 and arm64) is imported on first use, so a worker
    that never hashes does not load it. Errors come back as text, as Sprig returns them.
    """
    import bcrypt  # noqa: PLC0415 - only the templates that hash pay for it

    secret = go_bytes(password)
    if len(secret) > 72:
        return "failed to encrypt string with bcrypt: bcrypt: password length exceeds 72 bytes"
    return bcrypt.hashpw(secret, bcrypt.gensalt(rounds=10, prefix=b"2a")).decode()


def _htpasswd(username: str, password: str) -> str:
    """Sprig's ``htpasswd``: ``username:bcrypt(password)``; a ``:`` in the name is refused."""
    if ":" in username:
        return f"invalid username: {username}"
    return f"{username}:{_bcrypt(password)}"


def _rand_int(low: int, high: int) -> int:
    if high <= low:
        raise FuncError("randInt needs min < max")
    return random.randrange(low, high)


def _shuffle(text: str) -> str:
    chars = list(go_runes(text))
    random.shuffle(chars)
    return "".join(chars)


def _ternary(if_true: Any, if_false: Any, condition: bool) -> Any:
    return if_true if condition else if_false


def _default(default: Any, *given: Any) -> Any:
    return default if not given or empty(given[0]) else given[0]


def _coalesce(*values: Any) -> Any:
    return next((v for v in values if not empty(v)), None)


def _to_decimal(value: Any) -> int:
    try:
        return int(strval(value), 8)
    except ValueError:
        return 0


def _type_is_like(target: str, value: Any) -> bool:
    name = type_name(value)
    return target in (name, "*" + name)


def _initials(text: str) -> str:
    return "".join(word[0] for word in text.split())


def _ext(path: str) -> str:
    base = path.rsplit("/", 1)[-1]
    dot = base.rfind(".")
    return base[dot:] if dot >= 0 else ""


def _base(path: str) -> str:
    if path == "":
        return "."
    stripped = path.rstrip("/")
    return stripped.rsplit("/", 1)[-1] if stripped else "/"


def _dir(path: str) -> str:
    head = path[:path.rfind("/") + 1] if "/" in path else ""
    return posixpath.normpath(head) if head else "."


def _clean(path: str) -> str:
    return posixpath.normpath(path) if path else "."


def _pluck(name: str, *dicts: dict[str, Any]) -> list[Any]:
    return [d[name] for d in dicts if name in d]


def _keys(*dicts: dict[str, Any]) -> StringList:
    out = StringList()
    for values in dicts:
        out.extend(sorted(values))  # Go's order is random; sorted is one of its orders
    return out


_MUST = (
    "mustAppend",
    "mustChunk",
    "mustCompact",
    "mustDeepCopy",
    "mustFirst",
    "mustFromJson",
    "mustHas",
    "mustInitial",
    "mustLast",
    "mustMerge",
    "mustMergeOverwrite",
    "mustPrepend",
    "mustPush",
    "mustRegexFind",
    "mustRegexFindAll",
    "mustRegexMatch",
    "mustRegexReplaceAll",
    "mustRegexReplaceAllLiteral",
    "mustRegexSplit",
    "mustRest",
    "mustReverse",
    "mustSlice",
    "mustToJson",
    "mustToPrettyJson",
    "mustToRawJson",
    "mustUniq",
    "mustWithout",
)

SPRIG: dict[str, Func] = {
    "abbrev": Func(lambda w, s: _abbrev_full(s, 0, w) if w >= 4 else s, "is"),
    "abbrevboth": Func(lambda left, w, s: _abbrev_full(s, left, w), "iis"),
    "add": Func(lambda *v: Int64(sum(to_int(x) for x in v)), "", "a"),
    "add1": Func(lambda v: Int64(to_int(v) + 1), "a"),
    "add1f": Func(lambda v: float(Decimal(repr(to_float(v))) + 1), "a"),
    "addf": Func(_decimal_op(lambda a, b: a + b), "", "a"),
    "adler32sum": Func(lambda s: str(zlib.adler32(go_bytes(s))), "s"),
    "ago": Func(_ago, "a"),
    "all": Func(lambda *v: all(not empty(x) for x in v), "", "a"),
    "any": Func(lambda *v: any(not empty(x) for x in v), "", "a"),
    "append": Func(_append, "aa"),
    "atoi": Func(lambda s: to_int(s) if re.fullmatch(r"[-+]?\d+", s) else 0, "s"),
    "b32dec": Func(_b32dec, "s"),
    "b32enc": Func(lambda s: base64.b32encode(go_bytes(s)).decode(), "s"),
    "b64dec": Func(_b64dec, "s"),
    "b64enc": Func(lambda s: base64.b64encode(go_bytes(s)).decode(), "s"),
    "base": Func(_base, "s"),
    "biggest": Func(lambda a, *v: Int64(max([to_int(a), *map(to_int, v)])), "a", "a"),
    "buildCustomCert": Func(_build_custom_cert, "ss"),
    "camelcase": Func(_camelcase, "s"),
    "cat": Func(_cat, "", "a"),
    "ceil": Func(lambda v: float(math.ceil(to_float(v))), "a"),
    "chunk": Func(_chunk, "ia"),
    "clean": Func(_clean, "s"),
    "coalesce": Func(_coalesce, "", "a"),
    "compact": Func(lambda v: [x for x in _list(v, "compact") if not empty(x)], "a"),
    "concat": Func(_concat, "", "a"),
    "contains": Func(lambda sub, s: sub in s, "ss"),
    "deepCopy": Func(copy.deepcopy, "a"),
    "deepEqual": Func(lambda a, b: a == b and type(a) is type(b), "aa"),
    "default": Func(_default, "a", "a"),
    "dict": Func(_dict, "", "a"),
    "dig": Func(_dig, "", "a"),
    "dir": Func(_dir, "s"),
    "div": Func(lambda a, b: Int64(_div(a, b)), "aa"),
    "divf": Func(_decimal_op(lambda a, b: a / b), "a", "a"),
    "duration": Func(_duration, "a"),
    "durationRound": Func(_duration_round, "a"),
    "empty": Func(empty, "a"),
    "ext": Func(_ext, "s"),
    "fail": Func(_fail, "s"),
    "first": Func(_first, "a"),
    "float64": Func(to_float, "a"),
    "floor": Func(lambda v: float(math.floor(to_float(v))), "a"),
    "fromJson": Func(lambda s: _quiet(from_json, s), "s"),
    "get": Func(_get, "ms"),
    "has": Func(_has, "aa"),
    "hasKey": Func(lambda d, k: k in d, "ms"),
    "hasPrefix": Func(lambda p, s: s.startswith(p), "ss"),
    "hasSuffix": Func(lambda p, s: s.endswith(p), "ss"),
    "indent": Func(_indent, "is"),
    "initial": Func(lambda v: _list(v, "find initial")[:-1], "a"),
    "initials": Func(_initials, "s"),
    "int": Func(to_int, "a"),
    "int64": Func(lambda v: Int64(to_int(v)), "a"),
    "isAbs": Func(lambda p: p.startswith("/"), "s"),
    "join": Func(lambda sep, v: sep.join(_strslice(v)), "sa"),
    "kebabcase": Func(_kebabcase, "s"),
    "keys": Func(_keys, "", "m"),
    "kindIs": Func(lambda k, v: _kind_of(v) == k, "sa"),
    "kindOf": Func(_kind_of, "a"),
    "last": Func(_last, "a"),
    "list": Func(lambda *v: list(v), "", "a"),
    "lower": Func(lambda s: go_runes(s).lower(), "s"),
    "max": Func(lambda a, *v: Int64(max([to_int(a), *map(to_int, v)])), "a", "a"),
    "maxf": Func(lambda a, *v: max([to_float(a), *map(to_float, v)]), "a", "a"),
    "merge": Func(_merge(False), "m", "m"),
    "mergeOverwrite": Func(_merge(True), "m", "m"),
    "min": Func(lambda a, *v: Int64(min([to_int(a), *map(to_int, v)])), "a", "a"),
    "minf": Func(lambda a, *v: min([to_float(a), *map(to_float, v)]), "a", "a"),
    "mod": Func(lambda a, b: Int64(_mod(a, b)), "aa"),
    "mul": Func(lambda a, *v: Int64(math.prod([to_int(a), *map(to_int, v)])), "a", "a"),
    "mulf": Func(_decimal_op(lambda a, b: a * b), "a", "a"),
    "nindent": Func(lambda n, s: "\n" + _indent(n, s), "is"),
    "nospace": Func(lambda s: "".join(s.split()), "s"),
    "omit": Func(lambda d, *k: {x: v for x, v in d.items() if x not in k}, "m", "s"),
    "osBase": Func(_base, "s"),
    "osClean": Func(_clean, "s"),
    "osDir": Func(_dir, "s"),
    "osExt": Func(_ext, "s"),
    "osIsAbs": Func(lambda p: p.startswith("/"), "s"),
    "pick": Func(lambda d, *k: {x: v for x, v in d.items() if x in k}, "m", "s"),
    "pluck": Func(_pluck, "s", "m"),
    "plural": Func(lambda one, many, n: one if n == 1 else many, "ssi"),
    "prepend": Func(_prepend, "aa"),
    "push": Func(_append, "aa"),
    "quote": Func(_quote, "", "a"),
    "randInt": Func(_rand_int, "ii"),
    "regexFind": Func(lambda r, s: (m.group(0) if (m := _go_regex(r).search(s)) else ""),
                      "ss"),
    "regexFindAll": Func(_regex_find_all, "ssi"),
    "regexMatch": Func(lambda r, s: _quiet(lambda x: _go_regex(x).search(s) is not None, r)
                       or False, "ss"),  # Sprig's regexMatch alone fails quietly
    "regexQuoteMeta": Func(lambda s: re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", s), "s"),
    "regexReplaceAll": Func(_regex_replace, "sss"),
    "regexReplaceAllLiteral": Func(
        lambda r, s, repl: _bounded(_go_regex(r).sub(lambda m: repl, s)), "sss"),
    "regexSplit": Func(_regex_split, "ssi"),
    "repeat": Func(_repeat, "is"),
    "replace": Func(lambda old, new, s: _bounded(s.replace(old, new)), "sss"),
    "rest": Func(lambda v: _list(v, "find rest")[1:], "a"),
    "reverse": Func(lambda v: _list(v, "find reverse")[::-1], "a"),
    "round": Func(_round, "ai", "f"),
    "mustToDate": Func(gotime.parse, "ss"),
    "semver": Func(semver.parse, "s"),
    "semverCompare": Func(semver.satisfies, "ss"),
    "seq": Func(_seq, "", "i"),
    "set": Func(_set, "msa"),
    "bcrypt": Func(_bcrypt, "s"),
    "htpasswd": Func(_htpasswd, "ss"),
    "sha1sum": Func(_hash("sha1"), "s"),
    "sha256sum": Func(_hash("sha256"), "s"),
    "sha512sum": Func(_hash("sha512"), "s"),
    "shuffle": Func(_shuffle, "s"),
    "slice": Func(_slice, "a", "a"),
    "snakecase": Func(_snakecase, "s"),
    "sortAlpha": Func(_sort_alpha, "a"),
    "split": Func(_split, "ss"),
    "splitList": Func(lambda sep, s: StringList(_go_split(s, sep)), "ss"),
    "splitn": Func(lambda sep, n, s: _split(sep, s, n), "sis"),
    "squote": Func(_squote, "", "a"),
    "sub": Func(lambda a, b: Int64(to_int(a) - to_int(b)), "aa"),
    "subf": Func(_decimal_op(lambda a, b: a - b), "a", "a"),
    "substr": Func(_substr, "iis"),
    "swapcase": Func(_swapcase, "s"),
    "ternary": Func(_ternary, "aab"),
    "title": Func(_title, "s"),
    "toDecimal": Func(lambda v: Int64(_to_decimal(v)), "a"),
    "toJson": Func(lambda v: _quiet(go_json, v), "a"),
    "toPrettyJson": Func(lambda v: _quiet(lambda x: go_json(x, indent="  "), v), "a"),
    "toRawJson": Func(lambda v: _quiet(lambda x: go_json(x, escape_html=False), v), "a"),
    "toString": Func(strval, "a"),
    "toStrings": Func(lambda v: StringList(_strslice(v)), "a"),
    "trim": Func(lambda s: s.strip(" \t\n\r\v\f\u0085\u00a0"), "s"),
    "trimAll": Func(lambda cut, s: s.strip(cut), "ss"),
    "trimPrefix": Func(lambda p, s: s[len(p):] if p and s.startswith(p) else s, "ss"),
    "trimSuffix": Func(lambda p, s: s[:-len(p)] if p and s.endswith(p) else s, "ss"),
    "trimall": Func(lambda cut, s: s.strip(cut), "ss"),
    "trunc": Func(_trunc, "is"),
    "tuple": Func(lambda *v: list(v), "", "a"),
    "typeIs": Func(lambda t, v: type_name(v) == t, "sa"),
    "typeIsLike": Func(_type_is_like, "sa"),
    "typeOf": Func(type_name, "a"),
    "uniq": Func(_uniq, "a"),
    "unset": Func(_unset, "ms"),
    "until": Func(lambda n: _until_step(0, n, 1 if n >= 0 else -1), "i"),
    "untilStep": Func(_until_step, "iii"),
    "untitle": Func(_untitle, "s"),
    "upper": Func(lambda s: go_runes(s).upper(), "s"),
    "urlJoin": Func(_url_join, "m"),
    "urlParse": Func(_url_parse, "s"),
    "values": Func(lambda d: [d[k] for k in sorted(d)], "m"),
    "without": Func(_without, "a", "a"),
    "wrap": Func(lambda n, s: _wrap_with(n, "\n", s), "is"),
    "wrapWith": Func(_wrap_with, "iss"),
}


def _quiet(function: Callable[[Any], Any], value: Any) -> Any:
    """Sprig's non-must JSON functions: "" (toJson) or nil (fromJson) instead of an error."""
    try:
        return function(value)
    except FuncError:
        return None if function is from_json else ""


for _name in _MUST:
    _plain_name = _name[4].lower() + _name[5:]
    _plain_name = {"toJson": "toJson", "fromJson": "fromJson"}.get(_plain_name, _plain_name)
    _base_func = SPRIG[_plain_name]
    if _plain_name == "regexMatch":
        SPRIG[_name] = Func(lambda r, s: _go_regex(r).search(s) is not None, "ss")
    elif _plain_name == "fromJson":
        SPRIG[_name] = Func(from_json, "s")
    elif _plain_name in ("toJson", "toPrettyJson", "toRawJson"):
        _options: dict[str, dict[str, Any]] = {
            "toJson": {}, "toPrettyJson": {"indent": "  "}, "toRawJson": {"escape_html": False}}
        _kw = _options[_plain_name]
        SPRIG[_name] = Func(lambda v, kw=_kw: go_json(v, **kw), "a")
    else:
        SPRIG[_name] = _base_func

#: What the parser accepts as a function name.
FUNCTION_NAMES = frozenset(BUILTINS) | frozenset(SPRIG)
