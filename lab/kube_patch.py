"""The three patch formats the lab's API server accepts, by content type.

The formats themselves are backends.patching's (the kustomize renderer uses the same
code); here they become API answers: 422 for a patch that cannot apply, 415 for strategic
merge on a custom resource or an unknown content type, as the real API server says.
"""

from __future__ import annotations

from typing import Any

from dapper.backends.patching import PatchError, json_patch, merge_patch, strategic_merge
from dapper.lab.store import StoreError


def apply_patch(content_type: str, target: dict, patch: Any, *, custom: bool) -> dict:
    """Apply a PATCH body by its content type; custom resources refuse strategic merge."""
    ct = content_type.split(";")[0].strip().lower()
    try:
        if ct == "application/merge-patch+json":
            return merge_patch(target, patch)
        if ct == "application/strategic-merge-patch+json":
            if custom:
                raise StoreError(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types "
                    "include: application/json-patch+json, application/merge-patch+json, "
                    "application/apply-patch+yaml",
                )
            return strategic_merge(target, patch) or {}
        if ct == "application/json-patch+json":
            if not isinstance(patch, list):
                raise StoreError(400, "BadRequest", "json patch must be a list of operations")
            return json_patch(target, patch)
    except PatchError as exc:
        raise StoreError(422, "Invalid", str(exc)) from None
    raise StoreError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: "
        f"application/json-patch+json, application/merge-patch+json, "
        f"application/strategic-merge-patch+json (got {ct or 'none'})",
    )
