"""Screens of the console: the main panes, a row's detail, confirmations and help."""
