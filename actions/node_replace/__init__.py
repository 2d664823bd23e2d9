"""The node-replace runbook (see `runbook.py`); one module per phase of the procedure."""
