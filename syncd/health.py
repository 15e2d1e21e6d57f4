"""syncd's probes: what ``/healthz`` (liveness) and ``/readyz`` (readiness) mean for it. The
server, which also serves ``/metrics``, is :class:`plumbing.health.HealthServer`.

What each one means is chosen for what Kubernetes does with the answer:

- **/healthz** fails only when restarting the process is the cure: the event loop does not
  answer (then the request times out), or a task syncd cannot work without (a cache, the work
  queue, the leader election) has ended although nobody asked it to stop.
- **/readyz** is 200 once every cache has been listed and, with leader election on, this
  replica either leads or is a standby that can read the Lease. A standby is *ready*: syncd
  serves no traffic, so readiness only paces rollouts of its Deployment, and a standby reported
  unready would block a rolling update of two replicas for good (the new pod could never become
  ready while the old one leads).

The answers: see :mod:`plumbing.health`.
"""

from __future__ import annotations

from plumbing.health import Check, HealthServer, parse_address

__all__ = ["Check", "HealthServer", "parse_address"]
