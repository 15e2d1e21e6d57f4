"""Defaulting: the fields a real apiserver fills in on create and update.

Clients observe these (``kubectl rollout status`` refuses a StatefulSet without
``updateStrategy.type``; ``kubectl apply`` diffs against them; controllers compare them), so the
emulation sets the same values the ``SetDefaults_*`` functions and the admission plugins that
every cluster runs (ServiceAccount, DefaultTolerationSeconds, Priority) set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from testbed.kube.meta import Obj, meta, random_suffix

ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
SA_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"


def _probe(probe: Any) -> None:
    if not isinstance(probe, dict):
        return
    probe.setdefault("timeoutSeconds", 1)
    probe.setdefault("periodSeconds", 10)
    probe.setdefault("successThreshold", 1)
    probe.setdefault("failureThreshold", 3)
    http = probe.get("httpGet")
    if isinstance(http, dict):
        http.setdefault("path", "/")
        http.setdefault("scheme", "HTTP")


def _container(c: Any) -> None:
    if not isinstance(c, dict):
        return
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    image = str(c.get("image") or "")
    tail = image.rsplit("/", 1)[-1]
    if "imagePullPolicy" not in c:
        untagged = ":" not in tail and "@" not in image
        c["imagePullPolicy"] = "Always" if untagged or tail.endswith(":latest") else "IfNotPresent"
    c.setdefault("resources", {})
    for port in c.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
    for env in c.get("env") or []:
        ref = (env.get("valueFrom") or {}).get("fieldRef") if isinstance(env, dict) else None
        if isinstance(ref, dict):
            ref.setdefault("apiVersion", "v1")
    for key in ("livenessProbe", "readinessProbe", "startupProbe"):
        _probe(c.get(key))


def pod_spec(spec: Any) -> None:
    """SetDefaults_PodSpec and friends (also used for workload templates)."""
    if not isinstance(spec, dict):
        return
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("enableServiceLinks", True)
    if spec.get("serviceAccount") and not spec.get("serviceAccountName"):
        spec["serviceAccountName"] = spec["serviceAccount"]
    for key in ("containers", "initContainers"):
        for c in spec.get(key) or []:
            _container(c)
    for volume in spec.get("volumes") or []:
        if not isinstance(volume, dict):
            continue
        for source in ("secret", "configMap", "projected", "downwardAPI"):
            if isinstance(volume.get(source), dict):
                volume[source].setdefault("defaultMode", 420)


def _template(obj: Obj) -> None:
    template = (obj.get("spec") or {}).get("template")
    if isinstance(template, dict):
        template.setdefault("metadata", {}).setdefault("creationTimestamp", None)
        pod_spec(template.get("spec"))


def pod(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    pod_spec(spec)
    status = obj.setdefault("status", {})
    status.setdefault("phase", "Pending")
    status.setdefault("qosClass", _qos(spec))


def pod_admission(obj: Obj) -> None:
    """What the ServiceAccount / toleration / priority admission plugins add on create."""
    spec = obj.setdefault("spec", {})
    spec.setdefault("serviceAccountName", "default")
    spec["serviceAccount"] = spec["serviceAccountName"]
    spec.setdefault("priority", 0)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    tolerations = spec.setdefault("tolerations", [])
    present = {t.get("key") for t in tolerations if isinstance(t, dict)}
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if key not in present:
            tolerations.append(
                {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            )
    if spec.get("automountServiceAccountToken") is not False:
        volumes = spec.setdefault("volumes", [])
        if not any(str(v.get("name", "")).startswith("kube-api-access-") for v in volumes):
            name = f"kube-api-access-{random_suffix(5)}"
            volumes.append(
                {
                    "name": name,
                    "projected": {
                        "defaultMode": 420,
                        "sources": [
                            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                            {
                                "configMap": {
                                    "name": ROOT_CA_CONFIGMAP,
                                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                                }
                            },
                            {
                                "downwardAPI": {
                                    "items": [
                                        {
                                            "path": "namespace",
                                            "fieldRef": {
                                                "apiVersion": "v1",
                                                "fieldPath": "metadata.namespace",
                                            },
                                        }
                                    ]
                                }
                            },
                        ],
                    },
                }
            )
            for c in spec.get("containers") or []:
                mounts = c.setdefault("volumeMounts", [])
                if not any(m.get("mountPath") == SA_MOUNT_PATH for m in mounts):
                    mounts.append({"name": name, "readOnly": True, "mountPath": SA_MOUNT_PATH})


def _qos(spec: Obj) -> str:
    requests = limits = False
    for c in spec.get("containers") or []:
        resources = c.get("resources") or {}
        requests = requests or bool(resources.get("requests"))
        limits = limits or bool(resources.get("limits"))
    if not requests and not limits:
        return "BestEffort"
    return "Burstable"


def deployment(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    strategy = spec.setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", "25%")
        rolling.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    _template(obj)


def statefulset(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    strategy = spec.setdefault("updateStrategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        strategy.setdefault("rollingUpdate", {}).setdefault("partition", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault(
        "persistentVolumeClaimRetentionPolicy", {"whenDeleted": "Retain", "whenScaled": "Retain"}
    )
    for claim in spec.get("volumeClaimTemplates") or []:
        claim.setdefault("apiVersion", "v1")
        claim.setdefault("kind", "PersistentVolumeClaim")
        claim.setdefault("spec", {}).setdefault("volumeMode", "Filesystem")
        claim.setdefault("status", {}).setdefault("phase", "Pending")
    _template(obj)


def daemonset(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    strategy = spec.setdefault("updateStrategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", 1)
        rolling.setdefault("maxSurge", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    _template(obj)


def replicaset(obj: Obj) -> None:
    obj.setdefault("spec", {}).setdefault("replicas", 1)
    _template(obj)


def secret(obj: Obj) -> None:
    obj.setdefault("type", "Opaque")


def namespace(obj: Obj) -> None:
    name = meta(obj).get("name")
    if name:
        meta(obj).setdefault("labels", {})["kubernetes.io/metadata.name"] = name
    spec = obj.setdefault("spec", {})
    spec.setdefault("finalizers", ["kubernetes"])
    obj.setdefault("status", {}).setdefault("phase", "Active")


def service(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
    obj.setdefault("status", {}).setdefault("loadBalancer", {})


def role_binding(obj: Obj) -> None:
    for subject in obj.get("subjects") or []:
        if isinstance(subject, dict) and subject.get("kind") in ("User", "Group"):
            subject.setdefault("apiGroup", "rbac.authorization.k8s.io")


def crd(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("conversion", {"strategy": "None"})
    names = spec.setdefault("names", {})
    if names.get("kind"):
        names.setdefault("listKind", f"{names['kind']}List")
    if names.get("kind") and not names.get("singular"):
        names["singular"] = str(names["kind"]).lower()


BY_KIND: dict[tuple[str, str], Callable[[Obj], None]] = {
    ("", "Pod"): pod,
    ("", "Secret"): secret,
    ("", "Namespace"): namespace,
    ("", "Service"): service,
    ("apps", "Deployment"): deployment,
    ("apps", "StatefulSet"): statefulset,
    ("apps", "DaemonSet"): daemonset,
    ("apps", "ReplicaSet"): replicaset,
    ("rbac.authorization.k8s.io", "RoleBinding"): role_binding,
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): role_binding,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): crd,
}


ADMISSION: dict[tuple[str, str], Callable[[Obj], None]] = {("", "Pod"): pod_admission}


def apply_defaults(group: str, kind: str, obj: Obj, *, create: bool) -> None:
    if create:
        admit = ADMISSION.get((group, kind))
        if admit is not None:
            admit(obj)
    fn = BY_KIND.get((group, kind))
    if fn is not None:
        fn(obj)
