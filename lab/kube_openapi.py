"""/openapi/v3 and /openapi/v2 documents for the kinds the lab serves.

kubectl reads /openapi/v3 to decide whether the server validates fields itself (a PATCH
operation carrying the `fieldValidation` query parameter), to compute strategic merge
patches (the `x-kubernetes-patch-*` extensions) and for `kubectl explain`. Core schemas are
generated from the official Python client's models (field names, types, descriptions,
required fields); Flux and Mayastor schemas from the project's own CRD schemas.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
import re
import types
import typing
from typing import Any

from dapper.backends.gitops.fluxschemas import SCHEMAS as CUSTOM_SCHEMAS
from dapper.backends.patching import MERGE_KEYS
from dapper.lab.kinds import CUSTOM_GROUPS, RESOURCE_TYPES, ResourceType
from kubernetes.client import models as k8s_models
from pydantic import BaseModel

# core kinds whose client model is not named V1<Kind>
_MODEL_NAMES = {("", "Event"): "CoreV1Event"}
# fields the API server defines as int-or-string, or free-form
_INT_OR_STRING = {"type": "string", "x-kubernetes-int-or-string": True}
_QUERY_PARAMS = ("dryRun", "fieldManager", "fieldValidation", "force")
_CLASS_NAME = re.compile(r"^([A-Z][a-z]+)?(V\d+(?:alpha\d+|beta\d+)?)([A-Z]\w*)$")
_PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)


def schema_name(model: type) -> str:
    """io.k8s.api.<prefix.>v1.<Name>, so explain prints the Kubernetes type name."""
    m = _CLASS_NAME.match(model.__name__)
    if not m:
        return f"io.k8s.api.{model.__name__}"
    prefix, version, rest = m.groups()
    head = f"{prefix.lower()}." if prefix else ""
    return f"io.k8s.api.{head}{version.lower()}.{rest}"


def _description(model: type) -> str:
    doc = (model.__doc__ or "").split("Attributes:")[0]
    return " ".join(doc.split())


class _SchemaBuilder:
    """Walks client models into OpenAPI v3 component schemas, collecting referenced ones."""

    def __init__(self) -> None:
        self.schemas: dict[str, dict] = {}

    def model(self, model: type) -> str:
        name = schema_name(model)
        if name in self.schemas:
            return name
        self.schemas[name] = {}  # placeholder: recursive types refer back
        props: dict[str, dict] = {}
        required: list[str] = []
        names: dict[str, str] = getattr(model, "attribute_map", {})
        for attr, field in model.model_fields.items():  # type: ignore[attr-defined]
            json_name = names.get(attr) or field.serialization_alias or field.alias
            if not json_name:
                continue
            prop = self.type_of(field.annotation)
            if "$ref" in prop:  # as the API server publishes refs: wrapped, with a description
                prop = {"allOf": [prop], "default": {}}
            if field.description:
                prop = {**prop, "description": field.description}
            if json_name in MERGE_KEYS and prop.get("type") == "array":
                prop["x-kubernetes-patch-strategy"] = "merge"
                if MERGE_KEYS[json_name]:
                    prop["x-kubernetes-patch-merge-key"] = MERGE_KEYS[json_name]
            props[json_name] = prop
            if field.is_required():
                required.append(json_name)
        schema: dict = {"type": "object", "description": _description(model), "properties": props}
        if required:
            schema["required"] = required
        self.schemas[name] = schema
        return name

    def type_of(self, annotation: Any) -> dict:
        origin = typing.get_origin(annotation)
        args = typing.get_args(annotation)
        if origin is typing.Annotated:
            return self.type_of(args[0])
        if origin in (typing.Union, types.UnionType):
            real = [a for a in args if a is not type(None)]
            if len(real) == 1:
                return self.type_of(real[0])
            return dict(_INT_OR_STRING)
        if origin in (list, typing.List):  # noqa: UP006
            return {"type": "array", "items": self.type_of(args[0]) if args else {}}
        if origin in (dict, typing.Dict):  # noqa: UP006
            value = self.type_of(args[1]) if len(args) == 2 else {}
            return {"type": "object", "additionalProperties": value}
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return {"$ref": f"#/components/schemas/{self.model(annotation)}"}
        return _scalar(annotation)


_V3_ONLY = ("requestBody", "responses", "parameters")


def _scalar(annotation: Any) -> dict:
    if annotation is bool:
        return {"type": "boolean"}
    if annotation is int:
        return {"type": "integer", "format": "int64"}
    if annotation is float:
        return {"type": "number", "format": "double"}
    if annotation is datetime.datetime:
        return {"type": "string", "format": "date-time"}
    if annotation is datetime.date:
        return {"type": "string", "format": "date"}
    if annotation in (bytes, bytearray):
        return {"type": "string", "format": "byte"}
    if annotation is str:
        return {"type": "string"}
    return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def _gvk(rt: ResourceType, version: str) -> list[dict]:
    return [{"group": rt.group, "version": version, "kind": rt.kind}]


def _custom_schema(rt: ResourceType, version: str, builder: _SchemaBuilder) -> str:
    """A CRD's schema: apiVersion, kind, ObjectMeta, the project's spec schema, status."""
    name = f"{'.'.join(reversed(rt.group.split('.')))}.{version}.{rt.kind}"
    source = CUSTOM_SCHEMAS.get((rt.group, rt.kind), {})
    spec = _to_openapi(source.get("properties", {}).get("spec", {"type": "object"}))
    spec.setdefault("description", f"{rt.kind}Spec: the desired state of the {rt.kind}.")
    meta = builder.model(k8s_models.V1ObjectMeta)
    builder.schemas[name] = {
        "type": "object",
        "description": f"{rt.kind} is the Schema for the {rt.plural} API.",
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion of the object."},
            "kind": {"type": "string", "description": "Kind of the object."},
            "metadata": {"$ref": f"#/components/schemas/{meta}"},
            "spec": spec,
            "status": {
                "type": "object",
                "description": f"{rt.kind}Status: the observed state, written by the controller.",
                "x-kubernetes-preserve-unknown-fields": True,
            },
        },
        "x-kubernetes-group-version-kind": _gvk(rt, version),
    }
    return name


def _to_openapi(schema: dict) -> dict:
    """The project's JSON schemas as structural OpenAPI: enums typed, unknown fields kept."""
    out: dict = {k: v for k, v in schema.items() if k not in ("properties", "items", "enum")}
    if "enum" in schema:
        out["enum"] = schema["enum"]
        out.setdefault("type", "string")
    if "properties" in schema:
        out["properties"] = {k: _to_openapi(v) for k, v in schema["properties"].items()}
        out["x-kubernetes-preserve-unknown-fields"] = True
    if "items" in schema:
        out["items"] = _to_openapi(schema["items"])
    if out.get("type") == "object" and "properties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def _kind_schema(rt: ResourceType, version: str, builder: _SchemaBuilder) -> str:
    if rt.group in CUSTOM_GROUPS:
        return _custom_schema(rt, version, builder)
    model = getattr(k8s_models, _MODEL_NAMES.get((rt.group, rt.kind), f"V1{rt.kind}"))
    name = builder.model(model)
    builder.schemas[name]["x-kubernetes-group-version-kind"] = _gvk(rt, version)
    return name


def _parameters() -> list[dict]:
    return [{"name": p, "in": "query", "schema": {"type": "string"}} for p in _QUERY_PARAMS]


def _operations(rt: ResourceType, version: str, ref: str, item: bool) -> dict:
    gvk = {"group": rt.group, "version": version, "kind": rt.kind}
    body = {"content": {"application/json": {"schema": {"$ref": ref}}}}
    ok = {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": ref}}}}}
    ops: dict = {}
    verbs = ("get", "put", "patch", "delete") if item else ("get", "post")
    for verb in verbs:
        op: dict = {
            "operationId": f"{verb}{rt.kind}",
            "x-kubernetes-group-version-kind": gvk,
            "x-kubernetes-action": {"put": "put", "post": "post"}.get(verb, verb),
            "responses": ok,
        }
        if verb in ("put", "post", "patch"):
            op["parameters"] = _parameters()
        if verb in ("put", "post"):
            op["requestBody"] = body
        if verb == "patch":
            custom = rt.group in CUSTOM_GROUPS
            kinds = [t for t in _PATCH_TYPES if not (custom and "strategic" in t)]
            op["requestBody"] = {"content": {t: {"schema": {"type": "object"}} for t in kinds}}
        ops[verb] = op
    return ops


def _base(rt: ResourceType, version: str, namespaced: bool) -> str:
    root = f"/apis/{rt.group}/{version}" if rt.group else f"/api/{version}"
    return f"{root}/namespaces/{{namespace}}/{rt.plural}" if namespaced else f"{root}/{rt.plural}"


def group_versions() -> list[tuple[str, str]]:
    """(group, version) pairs the lab serves, core first."""
    seen: list[tuple[str, str]] = []
    for rt in RESOURCE_TYPES:
        for v in rt.versions:
            if (rt.group, v) not in seen:
                seen.append((rt.group, v))
    return seen


def gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


@functools.cache
def v3_document(group: str, version: str) -> dict | None:
    """The OpenAPI v3 document of one group/version, or None when not served."""
    kinds = [rt for rt in RESOURCE_TYPES if rt.group == group and version in rt.versions]
    if not kinds:
        return None
    builder = _SchemaBuilder()
    paths: dict[str, dict] = {}
    for rt in kinds:
        ref = f"#/components/schemas/{_kind_schema(rt, version, builder)}"
        base = _base(rt, version, rt.namespaced)
        paths[base] = _operations(rt, version, ref, item=False)
        paths[f"{base}/{{name}}"] = _operations(rt, version, ref, item=True)
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.4"},
        "paths": paths,
        "components": {"schemas": builder.schemas},
    }


@functools.cache
def _hash(group: str, version: str) -> str:
    doc = v3_document(group, version)
    return hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:128].upper()


def v3_root() -> dict:
    """The /openapi/v3 index: one URL (with a content hash) per served group/version."""
    return {
        "paths": {
            gv_path(g, v): {"serverRelativeURL": f"/openapi/v3/{gv_path(g, v)}?hash={_hash(g, v)}"}
            for g, v in group_versions()
        }
    }


def v3_for_path(path: str) -> dict | None:
    """/openapi/v3/api/v1 or /openapi/v3/apis/<group>/<version>."""
    parts = path.strip("/").split("/")[2:]
    if len(parts) == 2 and parts[0] == "api":
        return v3_document("", parts[1])
    if len(parts) == 3 and parts[0] == "apis":
        return v3_document(parts[1], parts[2])
    return None


@functools.cache
def v2_document() -> dict:
    """Swagger 2.0 of every served kind (the JSON form; v3 refs rewritten to #/definitions)."""
    definitions: dict[str, dict] = {}
    paths: dict[str, dict] = {}
    for group, version in group_versions():
        doc = v3_document(group, version) or {}
        text = json.dumps(doc).replace("#/components/schemas/", "#/definitions/")
        converted = json.loads(text)
        definitions.update(converted["components"]["schemas"])
        for path, ops in converted["paths"].items():
            paths[path] = {
                verb: {k: v for k, v in op.items() if k not in _V3_ONLY}
                | {
                    "parameters": [
                        {"name": p["name"], "in": "query", "type": "string", "uniqueItems": True}
                        for p in op.get("parameters", [])
                    ],
                    "responses": {"200": {"description": "OK"}},
                }
                for verb, op in ops.items()
            }
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v1.33.4"},
        "paths": paths,
        "definitions": definitions,
    }


def _resolve(schema: dict, components: dict) -> dict:
    while True:
        if "$ref" in schema:
            schema = components.get(schema["$ref"].rsplit("/", 1)[-1], {})
        elif "allOf" in schema and len(schema["allOf"]) == 1:
            schema = schema["allOf"][0]
        else:
            return schema


def unknown_fields(rt: ResourceType, version: str, obj: Any) -> list[str]:
    """Field paths of `obj` its kind's schema does not declare (strict field validation)."""
    doc = v3_document(rt.group, version)
    if doc is None:
        return []
    components = doc["components"]["schemas"]
    root = next(
        (
            s
            for s in components.values()
            if {"group": rt.group, "version": version, "kind": rt.kind}
            in s.get("x-kubernetes-group-version-kind", [])
        ),
        None,
    )
    out: list[str] = []

    def walk(node: Any, schema: dict, path: str) -> None:
        schema = _resolve(schema, components)
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            return
        if isinstance(node, dict) and "properties" in schema:
            for key, value in node.items():
                if key in schema["properties"]:
                    walk(value, schema["properties"][key], f"{path}.{key}")
                else:
                    out.append(f"{path}.{key}".lstrip("."))
        elif isinstance(node, dict) and isinstance(schema.get("additionalProperties"), dict):
            for key, value in node.items():
                walk(value, schema["additionalProperties"], f"{path}.{key}")
        elif isinstance(node, list) and isinstance(schema.get("items"), dict):
            for i, value in enumerate(node):
                walk(value, schema["items"], f"{path}[{i}]")

    if root is not None:
        walk(obj, root, "")
    return out
