"""Go-style durations, as VSO's refreshAfter accepts them."""

from __future__ import annotations

import re

import pytest

from syncd.durations import DURATION_PATTERN, DurationError, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("1m", 60),
        ("24h", 86400),
        ("1.5h", 5400),
        ("0.5s", 0.5),
        ("1m30s", 90),
        ("1h30m15s", 5415),
        ("90m", 5400),
        ("0s", 0),
    ],
)
def test_valid_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)
    assert re.fullmatch(DURATION_PATTERN, text)


@pytest.mark.parametrize(
    "text", ["", "30", "s", "1d", "1ms", "-5s", "+5s", " 5s", "5s ", "1.s", ".5s", "1h 30m",
             "1.5.5h", "5S", "1e3s"],
)
def test_invalid_durations_say_what_to_write(text: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_duration(text)
    assert repr(text) in str(info.value)
    assert "30s, 1.5h or 1m30s" in str(info.value)


def test_every_vso_duration_is_accepted() -> None:
    # VSO's own pattern, unrepeated: what it admits must parse here too.
    vso = r"^([0-9]+(\.[0-9]+)?(s|m|h))$"
    for text in ("5s", "10m", "2h", "0.25h", "100s"):
        assert re.fullmatch(vso, text)
        parse_duration(text)


def test_too_long_for_go() -> None:
    with pytest.raises(DurationError, match="too long"):
        parse_duration("3000000h")
    assert parse_duration("2000000h") == 2000000 * 3600
