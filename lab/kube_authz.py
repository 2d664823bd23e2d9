"""Who may do what in the lab's Kubernetes API, and the authorization.k8s.io reviews that
let clients ask (`kubectl auth can-i`, single and --list).

Two identities: admin is bound to cluster-admin; readonly to the `view` ClusterRole (get,
list, watch on everything but Secrets). Every identity may create its own reviews, as
system:basic-user allows on a real cluster. One rule decides both requests and reviews, so
the answers are truthful by construction.
"""

from __future__ import annotations

from dapper.lab.kinds import RESOURCE_TYPES

USERS = {"admin": "dapper-lab-admin", "readonly": "dapper-lab-readonly"}
READ_VERBS = ("get", "list", "watch")
AUTHZ_GROUP = "authorization.k8s.io"
SELF_REVIEWS = ("selfsubjectaccessreviews", "selfsubjectrulesreviews")
PUBLIC_URLS = (
    "/api",
    "/api/*",
    "/apis",
    "/apis/*",
    "/healthz",
    "/livez",
    "/readyz",
    "/version",
    "/version/",
    "/openapi",
    "/openapi/*",
)


def permits(identity: str, verb: str, group: str, resource: str, sub: str = "") -> bool:
    """The RBAC decision for one resource request."""
    if identity == "admin":
        return True
    if group == AUTHZ_GROUP and resource in SELF_REVIEWS:
        return verb == "create"
    if resource == "*" or group == "*":
        return False
    if group == "" and resource == "secrets":
        return False
    return verb in READ_VERBS and sub in ("", "status", "scale")


def permits_url(identity: str, verb: str, path: str) -> bool:
    if identity == "admin":
        return True
    if verb != "get":
        return False
    return any(
        path == url or (url.endswith("*") and path.startswith(url[:-1])) for url in PUBLIC_URLS
    )


def _binding(identity: str) -> str:
    role = "cluster-admin" if identity == "admin" else "view"
    return (
        f'RBAC: allowed by ClusterRoleBinding "dapper-lab-{identity}" of ClusterRole '
        f'"{role}" to User "{USERS[identity]}"'
    )


def access_review(identity: str, body: dict) -> dict:
    """The SelfSubjectAccessReview answer: spec echoed, status.allowed decided by `permits`."""
    spec = body.get("spec") or {}
    attrs = spec.get("resourceAttributes")
    if attrs is not None:
        allowed = permits(
            identity,
            attrs.get("verb", ""),
            attrs.get("group", ""),
            attrs.get("resource", ""),
            attrs.get("subresource", ""),
        )
    else:
        url = spec.get("nonResourceAttributes") or {}
        allowed = permits_url(identity, url.get("verb", ""), url.get("path", ""))
    status: dict = {"allowed": allowed}
    if allowed:
        status["reason"] = _binding(identity)
    return {
        "kind": "SelfSubjectAccessReview",
        "apiVersion": f"{AUTHZ_GROUP}/v1",
        "metadata": {"creationTimestamp": None},
        "spec": spec,
        "status": status,
    }


def rules_review(identity: str, body: dict) -> dict:
    """The SelfSubjectRulesReview answer: the rules `permits` applies, as RBAC lists them."""
    spec = body.get("spec") or {}
    review = {"verbs": ["create"], "apiGroups": [AUTHZ_GROUP], "resources": list(SELF_REVIEWS)}
    if identity == "admin":
        resource_rules = [review, {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]
        url_rules = [{"verbs": ["*"], "nonResourceURLs": ["*"]}]
    else:
        by_group: dict[str, list[str]] = {}
        for rt in RESOURCE_TYPES:
            if rt.group == AUTHZ_GROUP or not permits(identity, "get", rt.group, rt.plural):
                continue
            names = by_group.setdefault(rt.group, [])
            names.append(rt.plural)
            names.extend(
                f"{rt.plural}/{s}" for s in rt.subresources if permits(identity, "get", "", "", s)
            )
        resource_rules = [review] + [
            {"verbs": list(READ_VERBS), "apiGroups": [group], "resources": names}
            for group, names in by_group.items()
        ]
        url_rules = [{"verbs": ["get"], "nonResourceURLs": list(PUBLIC_URLS)}]
    return {
        "kind": "SelfSubjectRulesReview",
        "apiVersion": f"{AUTHZ_GROUP}/v1",
        "metadata": {"creationTimestamp": None},
        "spec": spec,
        "status": {
            "resourceRules": resource_rules,
            "nonResourceRules": url_rules,
            "incomplete": False,
        },
    }
