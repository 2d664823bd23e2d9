"""The runbook engine and the runbooks: guided, previewable, journaled, resumable changes."""
