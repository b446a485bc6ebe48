"""Programs that use the daemon or its analysis: `watch` and `health` (subscribers), `web` (the
dashboard, page in webui/), `scan` (files, offline, same analysis and alert rule) and `demo`."""
