"""`dfwatch bench --stops N`: does `dfwatch run` stop within its budget on a busy host, every time?

Starts the daemon N times on a looped file, waits for its first verdict (the models loaded, a
window decided), then SIGTERMs it while as many CPU hogs as the machine has cores keep it busy,
and records how long the stop took, its exit code and whether the supervisor had to kill a child
("child did not stop in time; killing it"). systemd gives the unit `TimeoutStopSec`; the
supervisor's own budget is `supervisor.stop_timeout` (5 s).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KILLED = "did not stop in time"


def stops(bundle_dir: Path, footage: Path, count: int, startup: float = 120) -> dict:
    from daemon.wire.protocol import Verdict
    from daemon.wire.subscriber import receive, subscribe

    rows = []
    for i in range(count):
        runtime = Path(tempfile.mkdtemp(prefix="dfwatch-stops-"))
        env = {**os.environ, "DFWATCH__ENDPOINTS__RUNTIME_DIR": str(runtime), "DFWATCH__LOGGING__FORMAT": "json",
               "DFWATCH__EVIDENCE__DIR": str(runtime / "evidence"), "DFWATCH__METRICS__PORT": "0"}
        log = runtime / "daemon.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "engines.cli", "run", "--bundle", str(bundle_dir),
                                     "--stream", f"s={footage}", "--set", "capture.loop=true"], env=env,
                                    stdout=out, stderr=subprocess.STDOUT)
        sub = subscribe(f"ipc://{runtime}/verdicts", None)
        hogs: list[subprocess.Popen] = []
        try:
            deadline = time.monotonic() + startup
            while time.monotonic() < deadline and not isinstance(receive(sub, 1.0), Verdict):
                if proc.poll() is not None:
                    raise RuntimeError(f"the daemon exited with {proc.returncode} before a verdict; see {log}")
            hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
            began = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
            rows.append({"stop": i + 1, "seconds": round(time.monotonic() - began, 3), "exit": code,
                         "killed": KILLED in log.read_text(errors="replace")})
        finally:
            for hog in hogs:
                hog.kill()
                hog.wait()
            sub.close()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            shutil.rmtree(runtime, ignore_errors=True)
        print(f"bench: stop {i + 1}/{count}: {rows[-1]['seconds']:.2f} s, exit {rows[-1]['exit']}"
              + (", a child was KILLED" if rows[-1]["killed"] else ""), flush=True)
    seconds = sorted(r["seconds"] for r in rows)
    return {"stops": rows, "count": len(rows), "killed": sum(r["killed"] for r in rows),
            "nonzero_exits": sum(r["exit"] != 0 for r in rows), "max_s": seconds[-1] if seconds else None,
            "median_s": seconds[len(seconds) // 2] if seconds else None, "hogs": os.cpu_count() or 2}


def stops_markdown(result: dict, command: str) -> str:
    lines = [f"Measured with `{command}` ({result['hogs']} CPU hogs during each stop).", "",
             f"{result['count']} stops: {result['killed']} with a child killed, {result['nonzero_exits']} non-zero "
             f"exits, median {result['median_s']} s, longest {result['max_s']} s.", "",
             "| stop | seconds | exit | a child killed |", "|---|---|---|---|"]
    lines += [f"| {r['stop']} | {r['seconds']:.2f} | {r['exit']} | {'yes' if r['killed'] else 'no'} |"
              for r in result["stops"]]
    return "\n".join(lines) + "\n"


def run_stops(args) -> int:
    """Stops under load (daemon/benchmarks/stops.py) on --bundle or the default family's demo bundle."""
    from daemon.benchmarks.common import one_bundle, write_results

    bundle_dir, footage, family = one_bundle(args)
    result = stops(bundle_dir, footage, args.stops)
    command = f"dfwatch bench --stops {args.stops}{family}"
    print(write_results(Path(args.out), "stops-results", result, stops_markdown(result, command)))
    return 0 if not result["killed"] and not result["nonzero_exits"] else 1

