"""Run both services for a few seconds and stop them the way Kubernetes does (SIGTERM).

Until the testbed and the controllers land this proves only the plumbing: each service starts,
logs ``ready`` and stops cleanly. It says so, rather than pretending to sync anything.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

SERVICES = ("syncd", "unsealer")


def main() -> None:
    print("demo: no testbed yet; starting both services against nothing, then SIGTERM.")
    for service in SERVICES:
        process = subprocess.Popen(
            [sys.executable, "-m", service, "run", "--log-format", "json"],
            stderr=subprocess.PIPE, text=True,
        )
        assert process.stderr is not None
        ready = json.loads(process.stderr.readline())
        print(f"demo: {service} said {ready['event']!r} (version {ready.get('version')})")
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=5)
        print(f"demo: {service} stopped on SIGTERM with exit code {code}")
        if code != 0:
            sys.exit(code)


if __name__ == "__main__":
    main()
