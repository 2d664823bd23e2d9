"""The Textual console: screens and widgets over a ClusterSnapshot (no network, no YAML)."""
