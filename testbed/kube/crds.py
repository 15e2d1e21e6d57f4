"""Custom resources: turning a stored CustomResourceDefinition into served ``ResourceType``s.

Each served version of a CRD becomes one ResourceType whose ``custom`` attribute holds the
version's schema, subresources and printer columns; the generic machinery asks it how to prune,
default and validate, how lists merge (``x-kubernetes-list-type``), and what the Table shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from testbed.kube import schema as schemas
from testbed.kube.errors import FieldError
from testbed.kube.kinds import SCALE, ListType, ResourceType, Subresource, field_getter
from testbed.kube.meta import Obj


@dataclass
class CustomResource:
    crd_name: str
    crd_uid: str
    schema: dict[str, Any]
    printer_columns: list[dict[str, Any]] = field(default_factory=list)
    scale: dict[str, Any] | None = None

    def list_type(self, path: tuple[str, ...]) -> ListType:
        if path == ("metadata", "finalizers"):
            return ("set", ())
        if path == ("metadata", "ownerReferences"):
            return ("map", ("uid",))
        return schemas.list_type(self.schema, path)

    def prune(self, obj: Obj) -> tuple[Obj, list[str]]:
        unknown: list[str] = []
        pruned = schemas.prune(obj, self.schema, "", unknown, root=True)
        return pruned, unknown

    def default(self, obj: Obj) -> Obj:
        result: Obj = schemas.default(obj, self.schema, root=True)
        return result

    def validate(self, obj: Obj) -> list[FieldError]:
        return schemas.validate(obj, self.schema, "", root=True)

    def columns(self) -> list[dict[str, Any]]:
        """The CRD's printer columns, or the server's default Age column when there are none."""
        if self.printer_columns:
            return self.printer_columns
        return [
            {
                "name": "Age",
                "type": "date",
                "jsonPath": ".metadata.creationTimestamp",
                "description": "CreationTimestamp is a timestamp representing the server time "
                "when this object was created.",
            }
        ]


def types_for(crd: Obj) -> list[ResourceType]:
    """One ResourceType per served version of ``crd``."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group", "")
    out = []
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        subs: list[Subresource] = []
        sub_spec = version.get("subresources") or {}
        if "status" in sub_spec:
            subs.append(Subresource("status", names.get("kind", ""), group, version["name"]))
        if "scale" in sub_spec:
            subs.append(SCALE)
        selectable = {
            f["jsonPath"].lstrip("."): field_getter(f["jsonPath"].lstrip("."))
            for f in version.get("selectableFields") or []
            if f.get("jsonPath")
        }
        custom = CustomResource(
            crd_name=crd["metadata"]["name"],
            crd_uid=crd["metadata"].get("uid", ""),
            schema=((version.get("schema") or {}).get("openAPIV3Schema") or {}),
            printer_columns=list(version.get("additionalPrinterColumns") or []),
            scale=sub_spec.get("scale"),
        )
        out.append(
            ResourceType(
                group=group,
                version=version["name"],
                plural=names.get("plural", ""),
                kind=names.get("kind", ""),
                namespaced=spec.get("scope") == "Namespaced",
                singular=names.get("singular") or str(names.get("kind", "")).lower(),
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                subresources=tuple(subs),
                generation="non-metadata",
                field_labels=selectable,
                storage=f"{group}/{names.get('plural', '')}",
                custom=custom,
            )
        )
    return out


def storage_version(crd: Obj) -> str:
    for version in (crd.get("spec") or {}).get("versions") or []:
        if version.get("storage"):
            return str(version["name"])
    return ""
