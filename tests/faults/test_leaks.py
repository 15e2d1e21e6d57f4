"""The leak sweep finds what it looks for, wherever it hides, and never repeats it."""

from __future__ import annotations

import base64
import json

from bench.faults.leaks import count, sweep, with_encodings

VALUE = "rot-0123456789abcdef"
TOKEN = "hvs.CAESIJ3x9Kq2mZ7pLw8vRt4uYb6N"


def test_found_in_logs_events_and_status() -> None:
    texts = {
        "log": json.dumps({"event": "synced", "error": f"bad value {VALUE}!"}),
        "events": f"...token={TOKEN}...",
        "status": json.dumps({"message": "all fine"}),
        "secret data": base64.b64encode(VALUE.encode()).decode(),
    }
    found = sweep(texts, with_encodings([VALUE, TOKEN, "short"]))
    assert set(found) == {"log", "events", "secret data"}
    assert count(found) == 3
    assert not any(VALUE in label or TOKEN in label for hits in found.values() for label in hits)


def test_odd_characters_and_nothing_found() -> None:
    odd = "p@ss w0rd with spaces"
    assert sweep({"log": f"said: {odd}."}, [odd]) == {"log": ["p@ss…(21)"]}
    assert sweep({"log": "rot-0123456789abcdeX"}, [VALUE]) == {}
