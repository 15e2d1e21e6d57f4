"""Go's ``time.Time`` for Sprig's ``mustToDate``: parsed with a Go layout (``2006-01-02``),
printed as Go prints it (``2024-01-02 00:00:00 +0000 UTC``), with the methods a template calls
(``.Unix``, ``.Format "Jan 2"``, ``.Year``, ``.UTC``...). Times without a zone are UTC (VSO's
pod runs in UTC). A value that does not match its layout is an error that does not repeat it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from syncd.gotemplate.errors import FuncError

_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
# Go's layout elements, longest first where one is a prefix of another.
_ELEMENTS = ("January", "Jan", "Monday", "Mon", "MST", "2006", "-07:00:00", "-0700", "-07:00",
             "-07", "Z07:00:00", "Z0700", "Z07:00", "Z07", "002", "01", "02", "03", "04", "05",
             "06", "_2", "15", "PM", "pm", "1", "2", "3", "4", "5")
_FRACTION = re.compile(r"[.,](0+|9+)(?!\d)")

_PATTERNS = {
    "January": r"(?P<month_name>[A-Za-z]+)", "Jan": r"(?P<month_abbr>[A-Za-z]{3})",
    "Monday": r"[A-Za-z]+", "Mon": r"[A-Za-z]{3}", "MST": r"(?P<zone_name>[A-Z]{3,5})",
    "2006": r"(?P<year>\d{4})", "06": r"(?P<year2>\d{2})", "01": r"(?P<month>\d{2})",
    "1": r"(?P<month>\d{1,2})", "02": r"(?P<day>\d{2})", "2": r"(?P<day>\d{1,2})",
    "_2": r" ?(?P<day>\d{1,2})", "002": r"(?P<yday>\d{3})", "15": r"(?P<hour>\d{1,2})",
    "03": r"(?P<hour12>\d{2})", "3": r"(?P<hour12>\d{1,2})", "04": r"(?P<minute>\d{2})",
    "4": r"(?P<minute>\d{1,2})", "05": r"(?P<second>\d{2})", "5": r"(?P<second>\d{1,2})",
    "PM": r"(?P<ampm>AM|PM)", "pm": r"(?P<ampm>am|pm)",
    "-07:00:00": r"(?P<offset>[+-]\d{2}:\d{2}:\d{2})", "-0700": r"(?P<offset>[+-]\d{4})",
    "-07:00": r"(?P<offset>[+-]\d{2}:\d{2})", "-07": r"(?P<offset>[+-]\d{2})",
    "Z07:00:00": r"(?P<offset>Z|[+-]\d{2}:\d{2}:\d{2})", "Z0700": r"(?P<offset>Z|[+-]\d{4})",
    "Z07:00": r"(?P<offset>Z|[+-]\d{2}:\d{2})", "Z07": r"(?P<offset>Z|[+-]\d{2})",
}


def _tokens(layout: str) -> list[tuple[bool, str]]:
    """``layout`` as (is an element, text) pairs."""
    out: list[tuple[bool, str]] = []
    i = 0
    while i < len(layout):
        fraction = _FRACTION.match(layout, i)
        if fraction and i > 0 and out and out[-1][0] and out[-1][1] in ("05", "5"):
            out.append((True, fraction.group(0)))
            i = fraction.end()
            continue
        for element in _ELEMENTS:
            if layout.startswith(element, i):
                # "Jan" in "January" is handled by order; "Mon" must not eat "Monday"'s start.
                out.append((True, element))
                i += len(element)
                break
        else:
            out.append((False, layout[i]))
            i += 1
    return out


class GoTime:
    """A Go ``time.Time``."""

    __slots__ = ("dt",)

    def __init__(self, dt: datetime) -> None:
        self.dt = dt

    def go_string(self) -> str:
        return self.format("2006-01-02 15:04:05.999999999 -0700 MST")

    @property
    def go_methods(self) -> dict[str, Callable[..., Any]]:
        return {
            "Unix": lambda: int(self.dt.timestamp()),
            "Year": lambda: self.dt.year, "Month": lambda: _MONTHS[self.dt.month - 1],
            "Day": lambda: self.dt.day, "Hour": lambda: self.dt.hour,
            "Minute": lambda: self.dt.minute, "Second": lambda: self.dt.second,
            "YearDay": lambda: self.dt.timetuple().tm_yday,
            "Weekday": lambda: _DAYS[self.dt.weekday()],
            "UTC": lambda: GoTime(self.dt.astimezone(UTC)),
            "Format": self.format, "String": self.go_string,
        }

    def format(self, layout: str) -> str:
        dt = self.dt
        offset = dt.utcoffset() or timedelta(0)
        minutes = int(offset.total_seconds()) // 60
        sign = "-" if minutes < 0 else "+"
        hh, mm = divmod(abs(minutes), 60)
        # A zone Go knows only by its offset is named by it ("+0200").
        name = "UTC" if offset == timedelta(0) else f"{sign}{hh:02d}{mm:02d}"
        hour12 = dt.hour % 12 or 12
        values = {
            "January": _MONTHS[dt.month - 1], "Jan": _MONTHS[dt.month - 1][:3],
            "Monday": _DAYS[dt.weekday()], "Mon": _DAYS[dt.weekday()][:3], "MST": name,
            "2006": f"{dt.year:04d}", "06": f"{dt.year % 100:02d}", "01": f"{dt.month:02d}",
            "1": str(dt.month), "02": f"{dt.day:02d}", "2": str(dt.day), "_2": f"{dt.day:2d}",
            "002": f"{dt.timetuple().tm_yday:03d}", "15": f"{dt.hour:02d}",
            "03": f"{hour12:02d}", "3": str(hour12), "04": f"{dt.minute:02d}",
            "4": str(dt.minute), "05": f"{dt.second:02d}", "5": str(dt.second),
            "PM": "PM" if dt.hour >= 12 else "AM", "pm": "pm" if dt.hour >= 12 else "am",
            "-07:00:00": f"{sign}{hh:02d}:{mm:02d}:00", "-0700": f"{sign}{hh:02d}{mm:02d}",
            "-07:00": f"{sign}{hh:02d}:{mm:02d}", "-07": f"{sign}{hh:02d}",
        }
        out = []
        for element, text in _tokens(layout):
            if not element:
                out.append(text)
            elif text.startswith("Z") and minutes == 0:
                out.append("Z")
            elif text.startswith("Z"):
                out.append(values["-" + text[1:]])
            elif text[0] in ".,":
                digits = f"{dt.microsecond:06d}000"[:len(text) - 1]
                if text[1] == "9":
                    digits = digits.rstrip("0")
                    out.append(text[0] + digits if digits else "")
                else:
                    out.append(text[0] + digits)
            else:
                out.append(values[text])
        return "".join(out)


def parse(layout: str, value: str) -> GoTime:
    """``time.ParseInLocation(layout, value, UTC)``; :class:`FuncError` without the value."""
    pattern = []
    for element, text in _tokens(layout):
        if not element:
            pattern.append(re.escape(text))
        elif text[0] in ".,":
            pattern.append(r"(?:[.,](?P<fraction>\d+))" + ("?" if text[1] == "9" else ""))
        else:
            pattern.append(_PATTERNS[text])
    try:
        match = re.fullmatch("".join(pattern), value)
    except re.error:  # an element twice: Go refuses such layouts too
        raise FuncError("the layout repeats an element") from None
    if match is None:
        raise FuncError("the value does not match the layout")
    g = match.groupdict()
    try:
        year = int(g["year"]) if g.get("year") else (
            (1900 if int(g["year2"]) >= 69 else 2000) + int(g["year2"]) if g.get("year2") else 0)
        if g.get("month_name") or g.get("month_abbr"):
            word = (g.get("month_name") or g.get("month_abbr") or "").lower()
            month = next(i + 1 for i, m in enumerate(_MONTHS)
                         if m.lower() == word or m[:3].lower() == word)
        else:
            month = int(g["month"]) if g.get("month") else 1
        day = int(g["day"]) if g.get("day") else 1
        hour = int(g["hour"]) if g.get("hour") else 0
        if g.get("hour12"):
            hour = int(g["hour12"]) % 12 + (12 if (g.get("ampm") or "").upper() == "PM" else 0)
        micro = int((g.get("fraction") or "0")[:6].ljust(6, "0"))
        zone: timezone = UTC
        offset = g.get("offset")
        if offset and offset != "Z":
            digits = offset[1:].replace(":", "")
            delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0),
                              seconds=int(digits[4:6] or 0))
            zone = timezone(-delta if offset[0] == "-" else delta)
        dt = datetime(max(year, 1), month, day, hour, int(g.get("minute") or 0),
                      int(g.get("second") or 0), micro, tzinfo=zone)
    except (ValueError, StopIteration):
        raise FuncError("the value is out of range for its layout") from None
    return GoTime(dt)
