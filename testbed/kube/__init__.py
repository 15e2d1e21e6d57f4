"""Kubernetes API emulation (aiohttp on loopback) for tests, the demo and the benchmarks.

Start it with ``testbed.kube.api.running_kube()`` (Python) or ``python -m testbed up``
(``testbed.kube.up``). See testbed/README.md, section "Kubernetes emulation".
"""

from testbed.kube.api import Admin, Kube, running_kube
from testbed.kube.cluster import CONTROLLERS, Settings

__all__ = ["CONTROLLERS", "Admin", "Kube", "Settings", "running_kube"]
