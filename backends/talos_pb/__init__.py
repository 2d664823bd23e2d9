"""Generated Talos machine API stubs (see backends/talos_proto/generate.py)."""
