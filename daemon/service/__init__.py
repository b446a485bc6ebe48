"""The service: the processes `dfwatch run` starts and keeps alive. `supervisor` starts one
`capture` process per stream and one `inference` process and restarts them; `notify` speaks
systemd's sd_notify; `install` writes the systemd units (`dfwatch service install`)."""
