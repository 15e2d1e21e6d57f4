"""The clusterrole-aggregation controller: fills the ``rules`` of ClusterRoles that have an
``aggregationRule`` (``admin``, ``edit``, ``view``, and any an operator ships).

This is how a CRD's own ClusterRole labelled ``rbac.authorization.k8s.io/aggregate-to-edit``
reaches every user bound to ``edit``: kube-controller-manager's controller watches all
ClusterRoles and, on any change, re-computes every aggregated one from the roles its selectors
match (:func:`testbed.kube.rbac.aggregated_rules`), writing only when the result differs. The
authorizer reads stored rules only, so until this controller has run, an aggregated role grants
what it granted before; rules written into an aggregated role by hand are overwritten.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

from testbed.kube.controllers.base import Controller
from testbed.kube.meta import clone
from testbed.kube.rbac import CLUSTER_ROLES, RBAC, aggregated_rules, same_rules
from testbed.kube.store import Change


class ClusterRoleAggregationController(Controller):
    name = "clusterrole-aggregation"
    storages = (CLUSTER_ROLES,)
    manager_name = "clusterrole-aggregation-controller"

    def keys(self, storage: str, change: Change) -> Iterable[Hashable]:
        # As the real one: the dependency graph is unknown and small, so every change queues
        # every aggregated role.
        return self.resync()

    def resync(self) -> Iterable[Hashable]:
        return [
            role["metadata"]["name"]
            for role in self.store.items(CLUSTER_ROLES)
            if role.get("aggregationRule")
        ]

    async def reconcile(self, key: Any) -> None:
        role = self.store.get(CLUSTER_ROLES, "", str(key))
        if role is None or not role.get("aggregationRule"):
            return
        rules = aggregated_rules(role, self.store.items(CLUSTER_ROLES))
        if same_rules(rules, role.get("rules")):
            return
        body = clone(role)
        body["rules"] = rules
        self.registry.update(
            self.rt(RBAC, "v1", "clusterroles"), "", str(key), body, opts=self.opts
        )
