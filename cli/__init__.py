"""The `dapper-tui` command line: the console by default, and lab/status/check/config/runbook."""
