"""Split custody of the unseal shares: custodians, their config, and the invariant.

No single place (a namespace, a node, a peer: custodians that fail or leak together) holds
enough shares to unseal Vault, nor does one together with the place of the key that decrypts
its encrypted shares (:mod:`.invariant`). The unseal procedure needs only the
:class:`Custodian` protocol; the CLI loads a config (:func:`load_config`), builds the
custodians (:func:`build_custodians`), checks the invariant before serving, and uses
:func:`distribute` for ``init``/``import``. The config format is documented in :mod:`.config`.
"""

from unsealer.custody.build import build_custodians, build_peer_server
from unsealer.custody.config import CustodyConfig, CustodyConfigError, load_config
from unsealer.custody.custodian import Custodian, CustodyConflict, CustodyError
from unsealer.custody.distribution import Distribution, DistributionError, distribute
from unsealer.custody.invariant import (
    Holding,
    InvariantError,
    InvariantReport,
    PlaceRow,
    Violation,
    check_configured,
    check_invariant,
    require_configured,
    require_invariant,
    static_holdings,
    survey,
)
from unsealer.custody.peer import IsSealed, PeerServer

__all__ = [
    "Custodian",
    "CustodyConfig",
    "CustodyConfigError",
    "CustodyConflict",
    "CustodyError",
    "Distribution",
    "DistributionError",
    "Holding",
    "InvariantError",
    "InvariantReport",
    "IsSealed",
    "PeerServer",
    "PlaceRow",
    "Violation",
    "build_custodians",
    "build_peer_server",
    "check_configured",
    "check_invariant",
    "distribute",
    "load_config",
    "require_configured",
    "require_invariant",
    "static_holdings",
    "survey",
]
