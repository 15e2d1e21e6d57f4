"""The distribution's version, as installed (or ``0+unknown`` when run from a bare checkout)."""

from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("vault-syncd")
except PackageNotFoundError:  # pragma: no cover - only when not installed
    VERSION = "0+unknown"
