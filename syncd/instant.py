"""Which change source ``syncd run`` uses for instant updates, and its settings.

Kept apart from :mod:`syncd.operator` so the wiring there stays one call; the sources
themselves are :mod:`syncd.events_source` (Vault Enterprise) and :mod:`syncd.audit_source`
(Community Vault, fed by ``syncd audit-relay``).
"""

from __future__ import annotations

from dataclasses import dataclass

from syncd.audit_source import AuditSource
from syncd.changes import Changes, Source, SourceName
from syncd.controller import Controller
from syncd.events_source import EventsSource
from syncd.vault_clients import VaultClients


@dataclass(frozen=True, kw_only=True)
class InstantSettings:
    """``syncd run --instant-updates-*``; see ``syncd run --help``."""

    source: SourceName = "none"
    #: The refresh interval of an instant object while its source is connected (at least its
    #: own refreshAfter): the safety poll for lost notices and changes that emit none.
    safety_seconds: float = 600.0
    #: ``audit``: where syncd listens for relays (``host:port``) and the token they present.
    relay_listen: str = "0.0.0.0:8201"
    relay_token: str = ""

    def __repr__(self) -> str:  # the relay token is a credential
        return (f"InstantSettings(source={self.source!r}, safety_seconds={self.safety_seconds},"
                f" relay_listen={self.relay_listen!r})")


def make_source(
    settings: InstantSettings, *, changes: Changes, controller: Controller,
    clients: VaultClients,
) -> Source | None:
    """The configured source, attached to ``changes``; None for ``none``."""
    source: Source
    if settings.source == "events":
        source = EventsSource(changes=changes, resolve=controller.resolve, clients=clients)
    elif settings.source == "audit":
        source = AuditSource(changes=changes, resolve=controller.resolve,
                             listen=settings.relay_listen, token=settings.relay_token)
    else:
        return None
    changes.attach(source)
    return source
