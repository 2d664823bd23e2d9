"""Reusable widgets of the console: the resource table, its pane, the header and status lines."""
