"""The GitOps tree: the Flux tree parser, the kustomize renderer and `check`."""
