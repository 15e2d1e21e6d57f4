"""The ``token_*`` fields auth-method roles share, with their legacy aliases.

Kubernetes and AppRole roles both describe the token a login mints with ``token_ttl``,
``token_policies`` … and still accept the pre-1.4 names ``policies``, ``ttl``, ``max_ttl``,
``period`` and ``bound_cidrs``; when both forms are sent the ``token_*`` one wins.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from testbed.vault.params import get_bool, get_duration, get_int, get_list, get_str
from testbed.vault.tokens import TokenRequest

_ALIASES = {
    "token_policies": "policies",
    "token_ttl": "ttl",
    "token_max_ttl": "max_ttl",
    "token_period": "period",
    "token_bound_cidrs": "bound_cidrs",
}


@dataclass
class TokenFields:
    token_ttl: int = 0
    token_max_ttl: int = 0
    token_policies: list[str] = field(default_factory=list)
    token_bound_cidrs: list[str] = field(default_factory=list)
    token_explicit_max_ttl: int = 0
    token_no_default_policy: bool = False
    token_num_uses: int = 0
    token_period: int = 0
    token_type: str = "default"

    def update(self, data: dict[str, Any]) -> None:
        """Apply the fields present in ``data`` (``token_*`` first, then legacy aliases)."""

        def pick(name: str) -> str | None:
            if name in data:
                return name
            alias = _ALIASES.get(name)
            return alias if alias is not None and alias in data else None

        for name in ("token_ttl", "token_max_ttl", "token_explicit_max_ttl", "token_period"):
            source = pick(name)
            if source is not None:
                setattr(self, name, get_duration(data, source))
        for name in ("token_policies", "token_bound_cidrs"):
            source = pick(name)
            if source is not None:
                setattr(self, name, get_list(data, source) or [])
        if "token_no_default_policy" in data:
            self.token_no_default_policy = get_bool(data, "token_no_default_policy")
        if "token_num_uses" in data:
            self.token_num_uses = get_int(data, "token_num_uses")
        if "token_type" in data:
            self.token_type = get_str(data, "token_type", "default")

    def describe(self) -> dict[str, Any]:
        """The fields as a role read returns them, legacy names mirrored as Vault does."""
        described = asdict(self)
        described.update(
            policies=list(self.token_policies),
            ttl=self.token_ttl,
            max_ttl=self.token_max_ttl,
            period=self.token_period,
        )
        return described

    def token_request(
        self, *, path: str, display_name: str, meta: dict[str, str], role: str
    ) -> TokenRequest:
        return TokenRequest(
            policies=list(self.token_policies),
            path=path,
            display_name=display_name,
            ttl=self.token_ttl,
            max_ttl=self.token_max_ttl,
            explicit_max_ttl=self.token_explicit_max_ttl,
            period=self.token_period,
            renewable=True,
            num_uses=self.token_num_uses,
            no_default_policy=self.token_no_default_policy,
            meta=meta,
            orphan=True,  # login tokens have no parent
            role=role,
        )
