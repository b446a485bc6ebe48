"""What a verdict becomes: `alerts` (the alert rule, one implementation for the daemon and
`scan`), `evidence` (frames and scores written beside an alert, off the hot path) and `metrics`
(Prometheus, read from the published status)."""
