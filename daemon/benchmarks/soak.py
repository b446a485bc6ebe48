"""`dfwatch bench --soak MINUTES`: the daemon on looped footage for a long time — does it leak,
stall or restart?

Runs `dfwatch run` with `streams` looped copies of the footage, and reports the resident memory
(RSS) of every process once the first verdict arrived and at the end (growth in %, plus a sample
every `SAMPLE_S`), the longest pause between two verdicts of a stream, child restarts (a changed
pid) and the daemon's own counters from its last status message.
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

SAMPLE_S = 30.0


def memory_mb(pid: int, field: str = "VmRSS") -> float:
    """A memory figure of /proc/PID/status in MB (VmRSS: resident now; VmHWM: its peak); 0 when gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def stop_daemon(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL if it has not stopped within `timeout` seconds."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def processes(root: int, children) -> dict[str, int]:
    """role -> pid for the supervisor and its children (`children`: bench's /proc walk)."""
    return {"run": root, **{role: pid for pid, role in children(root).items()}}


def soak(bundle_dir: Path, footage: Path, minutes: float, streams: int, children, startup: float = 300) -> dict:
    from daemon.wire.protocol import Status, Verdict
    from daemon.wire.subscriber import receive, subscribe

    runtime = Path(tempfile.mkdtemp(prefix="dfwatch-soak-"))
    env = {**os.environ, "DFWATCH__ENDPOINTS__RUNTIME_DIR": str(runtime), "DFWATCH__LOGGING__LEVEL": "warning",
           "DFWATCH__EVIDENCE__DIR": str(runtime / "evidence"), "DFWATCH__METRICS__PORT": "0"}
    argv = [sys.executable, "-m", "engines.cli", "run", "--bundle", str(bundle_dir), "--set", "capture.loop=true"]
    for i in range(streams):
        argv += ["--stream", f"s{i}={footage}"]
    log = runtime / "daemon.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    sub = subscribe(f"ipc://{runtime}/verdicts", None)
    last_verdict: dict[str, float] = {}
    gaps: dict[str, float] = {}
    verdicts, status, samples, pids, start = 0, None, [], {}, None
    try:
        deadline = time.monotonic() + startup
        next_sample = 0.0
        while time.monotonic() < deadline and proc.poll() is None:
            msg = receive(sub, 1.0)
            now = time.monotonic()
            if isinstance(msg, Verdict):
                if start is None:  # steady state from the first verdict
                    start, deadline = now, now + minutes * 60
                    pids = processes(proc.pid, children)
                if msg.stream in last_verdict:
                    gaps[msg.stream] = max(gaps.get(msg.stream, 0.0), now - last_verdict[msg.stream])
                last_verdict[msg.stream] = now
                verdicts += 1
            elif isinstance(msg, Status):
                status = msg
            if start is not None and now >= next_sample:
                next_sample = now + SAMPLE_S
                samples.append({"t_s": round(now - start), **{role: round(memory_mb(pid), 1) for role, pid in
                                                              processes(proc.pid, children).items()}})
        end_pids = processes(proc.pid, children)
        samples.append({"t_s": round(time.monotonic() - start) if start else 0,
                        **{role: round(memory_mb(pid), 1) for role, pid in end_pids.items()}})
    finally:
        sub.close()
        stop_daemon(proc)
    if start is None:
        return {"error": f"no verdict within {startup:.0f} s; see {log}"}
    shutil.rmtree(runtime, ignore_errors=True)  # kept, with its log, only when the run failed
    first, last = samples[0], samples[-1]
    # allocators and caches fill during the first minutes: growth after that is what a leak looks like
    warm = next((s for s in samples if s["t_s"] >= min(300.0, minutes * 20)), first)
    return {
        "minutes": minutes, "streams": streams, "verdicts": verdicts,
        "rss_mb_start": {k: v for k, v in first.items() if k != "t_s"},
        "rss_mb_end": {k: v for k, v in last.items() if k != "t_s"},
        "rss_growth_pct": {k: round(100 * (last[k] - v) / v, 1) for k, v in first.items() if k != "t_s" and v and k in last},
        "warm_t_s": warm["t_s"],
        "rss_growth_after_warmup_pct": {k: round(100 * (last[k] - v) / v, 1) for k, v in warm.items()
                                        if k != "t_s" and v and k in last},
        "rss_samples": samples,
        "max_verdict_gap_s": {k: round(v, 1) for k, v in sorted(gaps.items())},
        "restarts": sorted(role for role, pid in pids.items() if end_pids.get(role) != pid),
        "exit_code": proc.returncode,
        "counters": {name: {k: getattr(st, k) for k in ("frames_in", "analysed", "windows", "dropped", "reconnects",
                                                   "stalls", "state")}
                     for name, st in sorted(status.streams.items())} if status else {},
        "invalid": status.invalid if status else {},
        "log": str(log),
    }


def soak_markdown(r: dict, command: str) -> str:
    if "error" in r:
        return f"Soak: {r['error']}\n"
    roles = sorted(r["rss_mb_start"])
    lines = [f"Soak: {r['streams']} looped streams for {r['minutes']:g} min (`{command}`): {r['verdicts']} verdicts, "
             f"longest pause between two verdicts of a stream "
             + ", ".join(f"{k} {v} s" for k, v in r["max_verdict_gap_s"].items())
             + f"; restarts: {', '.join(r['restarts']) or 'none'}; daemon exit code {r['exit_code']}.", "",
             f"| process | RSS at first verdict | RSS at end | growth | growth after {r['warm_t_s']} s |",
             "|---|---|---|---|---|"]
    for role in roles:
        lines.append(f"| {role} | {r['rss_mb_start'][role]:.0f} MB | {r['rss_mb_end'].get(role, 0):.0f} MB | "
                     f"{r['rss_growth_pct'].get(role, 0):+.1f}% | {r['rss_growth_after_warmup_pct'].get(role, 0):+.1f}% |")
    counters = "; ".join(f"{name}: {c['frames_in']} frames in, {c['analysed']} analysed, {c['windows']} windows, "
                         f"dropped {c['dropped'] or {}}" for name, c in r["counters"].items())
    lines += ["", f"Counters at the end: {counters}; invalid messages {r['invalid'] or 'none'}."]
    return "\n".join(lines) + "\n"


def run_soak(args) -> int:
    """The soak (daemon/benchmarks/soak.py) on --bundle or the default family's demo bundle."""
    from daemon.benchmarks.common import _children, one_bundle, write_results

    bundle_dir, footage, family = one_bundle(args)
    print(f"bench: soak, {args.soak_streams} looped stream(s) of {footage.name}, {args.soak:g} min ...", flush=True)
    result = soak(bundle_dir, footage, args.soak, args.soak_streams, _children)
    command = f"dfwatch bench --soak {args.soak:g}{family}"
    print(write_results(Path(args.out), "soak-results", result, soak_markdown(result, command)))
    return 0 if "error" not in result and not result["restarts"] else 1

