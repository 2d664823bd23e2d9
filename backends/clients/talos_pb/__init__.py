"""Generated Talos machine API stubs (see backends/clients/talos_proto/generate.py)."""
