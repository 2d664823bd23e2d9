"""The lab's `helmfile`: what the bootstrap runs, answered through the Kubernetes API.

The lab writes `<lab dir>/bin/helmfile` (shebang: the interpreter running the lab) and
names it in `Config.helmfile`, so the bootstrap takes the same path as on a real cluster
up to the process boundary: it runs `helmfile --file <helmfile.yaml> apply ...` or
`destroy --selector name=X` with `KUBECONFIG` set. The shim reads the helmfile (releases,
`needs` order, values files), keeps the releases `--selector` picks, and installs or
uninstalls each through the API of the kubeconfig it was given (TLS verified), as
`helm_releases` describes. Every invocation (argv, cwd and the NAMES of the KUBE*/HELM*
environment variables, never their values) is appended to `<lab dir>/helmfile.log` as
one JSON line, so tests can show the command line a real cluster would get.

Failures print one line on stderr and exit 1, as helmfile does when helm fails.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dapper.lab.helm_releases import Release, chart_objects, installed_objects, release_secret

LOG_NAME = "helmfile.log"
_FLUX_INSTANCE = ("fluxcd.controlplane.io", "v1", "fluxinstances")
_EXISTS = object()  # a create answered 409 AlreadyExists


class ShimError(Exception):
    """One line for stderr; the invocation fails with exit code 1."""


def write_shim(directory: Path) -> Path:
    """`<directory>/bin/helmfile`, executable, running this module for that lab dir."""
    path = directory / "bin" / "helmfile"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"#!{sys.executable}\n"
        "# The dapper-tui lab's helmfile: answers through the lab's Kubernetes API.\n"
        "import sys\n"
        "from dapper.lab.helmfile_shim import main\n"
        f"sys.exit(main(sys.argv[1:], {str(directory)!r}))\n"
    )
    path.chmod(0o755)
    return path


def _log(lab_dir: Path, argv: Sequence[str]) -> None:
    names = sorted(k for k in os.environ if k.startswith(("KUBE", "HELM")))
    entry = {"argv": ["helmfile", *argv], "cwd": os.getcwd(), "env": names}
    with (lab_dir / LOG_NAME).open("a") as fh:
        fh.write(json.dumps(entry) + "\n")


def read_log(lab_dir: Path) -> list[dict[str, Any]]:
    """The invocations so far, oldest first."""
    path = lab_dir / LOG_NAME
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="helmfile", add_help=False)
    p.add_argument("-f", "--file", default="helmfile.yaml")
    p.add_argument("-l", "--selector", action="append", default=[])
    p.add_argument("-e", "--environment")
    p.add_argument("--kube-context")
    p.add_argument("command", choices=("apply", "sync", "destroy"))
    return p


def main(argv: Sequence[str], lab_dir: str) -> int:
    _log(Path(lab_dir), argv)
    args, _rest = _parser().parse_known_args(list(argv))  # diff flags change nothing here
    try:
        releases = select(load_releases(Path(args.file)), args.selector)
        api = _Api(os.environ.get("KUBECONFIG", ""), args.kube_context)
        if args.command == "destroy":
            for release in reversed(releases):
                api.uninstall(release)
        else:
            for release in releases:
                api.install(release)
    except ShimError as exc:
        print(f"in {args.file}: {exc}", file=sys.stderr)
        return 1
    return 0


# -- the helmfile ---------------------------------------------------------------------------


def load_releases(path: Path) -> list[Release]:
    """The releases in `needs` order (a release after everything it needs)."""
    from ruamel.yaml import YAML, YAMLError

    try:
        doc = YAML(typ="safe").load(path.read_text()) or {}
    except (OSError, YAMLError) as exc:
        raise ShimError(f"failed to read {path}: {exc}") from None
    out: list[Release] = []
    for raw in doc.get("releases") or []:
        values: dict[str, Any] = {}
        for ref in raw.get("values") or []:
            if isinstance(ref, str):
                try:
                    values.update(YAML(typ="safe").load((path.parent / ref).read_text()) or {})
                except (OSError, YAMLError) as exc:
                    raise ShimError(f"failed to read values {ref}: {exc}") from None
            elif isinstance(ref, dict):
                values.update(ref)
        out.append(
            Release(
                name=str(raw["name"]),
                namespace=str(raw.get("namespace") or "default"),
                chart=str(raw.get("chart") or ""),
                version=str(raw.get("version") or ""),
                values=values,
                needs=tuple(str(n) for n in raw.get("needs") or []),
            )
        )
    return _ordered(out)


def _ordered(releases: list[Release]) -> list[Release]:
    by_key = {r.key: r for r in releases}
    done: list[Release] = []
    seen: set[str] = set()

    def visit(r: Release, path: tuple[str, ...]) -> None:
        if r.key in seen:
            return
        if r.key in path:
            raise ShimError(f"circular dependency between releases: {' -> '.join(path)}")
        for need in r.needs:
            dep = by_key.get(need if "/" in need else f"{r.namespace}/{need}")
            if dep is None:
                raise ShimError(f'release "{r.key}" depends on "{need}" which does not exist')
            visit(dep, (*path, r.key))
        seen.add(r.key)
        done.append(r)

    for r in releases:
        visit(r, ())
    return done


def select(releases: list[Release], selectors: Sequence[str]) -> list[Release]:
    """helmfile's --selector: each one a comma-joined set of key=value (or key!=value)
    on name and namespace; a release matching any selector is kept."""
    if not selectors:
        return releases

    def matches(r: Release, selector: str) -> bool:
        labels = {"name": r.name, "namespace": r.namespace}
        for term in selector.split(","):
            if "!=" in term:
                k, v = term.split("!=", 1)
                if labels.get(k.strip()) == v.strip():
                    return False
            elif "=" in term:
                k, v = term.split("=", 1)
                if labels.get(k.strip()) != v.strip():
                    return False
        return True

    return [r for r in releases if any(matches(r, s) for s in selectors)]


# -- the cluster ------------------------------------------------------------------------


class _Api:
    """The few API calls a release needs, through the official client."""

    def __init__(self, kubeconfig: str, context: str | None) -> None:
        from kubernetes.config.config_exception import ConfigException

        from kubernetes import client, config

        path = (kubeconfig.split(os.pathsep)[0] if kubeconfig else "") or None
        cfg = client.Configuration()
        try:
            config.load_kube_config(config_file=path, context=context, client_configuration=cfg)
        except (ConfigException, OSError) as exc:
            raise ShimError(f"Kubernetes cluster unreachable: {exc}") from None
        cfg.retries = 0  # helm fails on the first refused connection, it does not retry
        self.client = client.ApiClient(cfg)
        self.core = client.CoreV1Api(self.client)
        self.apps = client.AppsV1Api(self.client)
        self.crds = client.ApiextensionsV1Api(self.client)
        self.custom = client.CustomObjectsApi(self.client)

    def _call(
        self,
        release: Release,
        fn: Any,
        *args: Any,
        missing_ok: bool = False,
        exists_ok: bool = False,
    ) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, _request_timeout=10)
        except ApiException as exc:
            if missing_ok and exc.status == 404:
                return None
            if exists_ok and exc.status == 409:
                return _EXISTS
            reason = exc.reason or ""
            raise ShimError(
                f'release "{release.name}" failed: Error: {exc.status} {reason}'.strip()
            ) from None
        except (HTTPError, OSError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ShimError(
                f'release "{release.name}" failed: Error: Kubernetes cluster unreachable: {reason}'
            ) from None

    def _secret(self, release: Release) -> Any:
        return self._call(
            release,
            self.core.read_namespaced_secret,
            release.secret_name,
            release.namespace,
            missing_ok=True,
        )

    def install(self, release: Release) -> None:
        if self._secret(release) is not None:
            print(f'Release "{release.name}" has been upgraded: no changes. Happy Helming!')
            return
        print(f'Release "{release.name}" does not exist. Installing it now.')
        ns = self._call(release, self.core.read_namespace, release.namespace, missing_ok=True)
        if ns is None:  # helmfile's createNamespace default
            body = {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": release.namespace},
            }
            self._call(release, self.core.create_namespace, body)
        objects = chart_objects(release)
        for obj in objects:
            self._create(release, obj)
        secret = release_secret(release, objects)
        self._call(release, self.core.create_namespaced_secret, release.namespace, secret)
        print(
            f"NAME: {release.name}\nNAMESPACE: {release.namespace}\nSTATUS: deployed\nREVISION: 1"
        )

    def _create(self, release: Release, obj: dict[str, Any]) -> None:
        """Create `obj`; one that exists already is adopted when it is this release's (a
        CRD a destroy kept), as helm does, and refused otherwise."""
        name, ns = obj["metadata"]["name"], obj["metadata"].get("namespace", "")
        kind = obj["kind"]
        group, version, plural = _FLUX_INSTANCE
        if kind == "Deployment":
            create, read = (
                self.apps.create_namespaced_deployment,
                self.apps.read_namespaced_deployment,
            )
            made = self._call(release, create, ns, obj, exists_ok=True)
        elif kind == "DaemonSet":
            create, read = (
                self.apps.create_namespaced_daemon_set,
                self.apps.read_namespaced_daemon_set,
            )
            made = self._call(release, create, ns, obj, exists_ok=True)
        elif kind == "CustomResourceDefinition":
            create = self.crds.create_custom_resource_definition
            read = self.crds.read_custom_resource_definition
            made = self._call(release, create, obj, exists_ok=True)
        else:  # the FluxInstance
            create = self.custom.create_namespaced_custom_object
            made = self._call(release, create, group, version, ns, plural, obj, exists_ok=True)
        if made is not _EXISTS:
            return
        if kind == "FluxInstance":
            live = self._call(
                release, self.custom.get_namespaced_custom_object, group, version, ns, plural, name
            )
        else:
            live = self._call(release, read, *((name, ns) if ns else (name,)))
        annotations = (self.client.sanitize_for_serialization(live).get("metadata") or {}).get(
            "annotations"
        ) or {}
        owner = (
            annotations.get("meta.helm.sh/release-name"),
            annotations.get("meta.helm.sh/release-namespace"),
        )
        if owner != (release.name, release.namespace):
            where = f' in namespace "{ns}"' if ns else ""
            raise ShimError(
                f'release "{release.name}" failed: Error: rendered manifests contain a resource '
                f'that already exists. Unable to continue with install: {kind} "{name}"{where} '
                "exists and cannot be imported into the current release: invalid ownership "
                "metadata"
            )

    def uninstall(self, release: Release) -> None:
        secret = self._secret(release)
        if secret is None:
            print(f'release "{release.name}" is not installed: skipping')
            return
        raw = self.client.sanitize_for_serialization(secret)
        for obj in reversed(installed_objects(raw)):
            if (obj["metadata"].get("annotations") or {}).get("helm.sh/resource-policy") == "keep":
                continue
            self._delete(release, obj)
        self._call(
            release,
            self.core.delete_namespaced_secret,
            release.secret_name,
            release.namespace,
            missing_ok=True,
        )
        print(f'release "{release.name}" uninstalled')

    def _delete(self, release: Release, obj: dict[str, Any]) -> None:
        name, ns = obj["metadata"]["name"], obj["metadata"].get("namespace", "")
        kind = obj["kind"]
        if kind == "Deployment":
            self._call(release, self.apps.delete_namespaced_deployment, name, ns, missing_ok=True)
        elif kind == "DaemonSet":
            self._call(release, self.apps.delete_namespaced_daemon_set, name, ns, missing_ok=True)
        elif kind == "CustomResourceDefinition":
            self._call(release, self.crds.delete_custom_resource_definition, name, missing_ok=True)
        else:
            self._call(
                release,
                self.custom.delete_namespaced_custom_object,
                *_FLUX_INSTANCE[:2],
                ns,
                _FLUX_INSTANCE[2],
                name,
                missing_ok=True,
            )
