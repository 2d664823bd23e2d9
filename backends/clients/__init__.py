"""Clients of the cluster's systems: Kubernetes, Proxmox, Talos, Git."""
