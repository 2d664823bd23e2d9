"""The bootstrap runbook: from an empty Proxmox host to a Flux-reconciled cluster."""
