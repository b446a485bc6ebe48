"""`dfwatch run`: start the inference process and one capture process per stream; keep them up.

A crashed child is restarted with exponential backoff; after `max_crashes` crashes within
`crash_window` seconds the supervisor gives up on it loudly (on the inference process: stops
everything and exits 1, so systemd's Restart= takes over; on a capture process: that stream
stays down, the others keep running). A capture that exits 0 has finished its file and is not
restarted, nor is any child that exits with PERMANENT_EXIT (78: it can never work as configured,
and said why once); for the inference process or the model server that stops everything with
exit code 78, which the systemd unit does not restart either (RestartPreventExitStatus=78). A
camera that is down is not a crash: its capture process waits for it, so no give-up rule applies. SIGTERM/SIGINT stop everything within `stop_timeout` seconds, exit code 0.

systemd: this is the service's main process. It relays the inference process's READY=1 (models
loaded), WATCHDOG=1 (sent only by the inference loop) and EXTEND_TIMEOUT_USEC (engine builds)
to $NOTIFY_SOCKET, and sends STOPPING=1 on shutdown. SIGHUP (ExecReload) re-reads the
configuration: RELOADING=1, the children stop, and the process execs itself with the same
arguments (its READY=1 follows once the models are loaded); a configuration that does not
validate is refused with one line and everything keeps running.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field

from daemon.service import notify
from daemon.wire.endpoints import Endpoints
from engines.logs import get_logger
from engines.sources import PERMANENT_EXIT

log = get_logger()
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the supervisor dies (even by SIGKILL)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


@dataclass
class Child:
    name: str                    # "infer" or "capture:<stream>"
    argv: list[str]
    env: dict | None = None
    proc: subprocess.Popen | None = None
    crashes: deque = field(default_factory=deque)
    restart_at: float | None = None
    done: bool = False           # finished (a file ended) or given up: not restarted
    after_ready: bool = False    # started once the inference process is ready (a file would play to no one)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Supervisor:
    def __init__(self, settings, infer_argv: list[str], captures: dict[str, list[str]], endpoints: Endpoints,
                 bridges: dict[str, list[str]] | None = None, capture_env: dict[str, dict] | None = None,
                 web: list[str] | None = None, models: list[str] | None = None, after_ready: set[str] = frozenset(),
                 argv: list[str] | None = None, check_config=None):
        """`capture_env`: per capture, variables added to its environment (its source); `web`:
        the dashboard's command line, when it is enabled; `models`: a local model server's
        (`dfwatch serve-models`, triton.serve), started first; `after_ready`: captures started only
        once the inference process has loaded its models (files: a paced file played into a loading
        process loses its frames); `argv` and `check_config`: what a reload (SIGHUP) runs again and
        checks first."""
        self.settings = settings
        self.endpoints = endpoints
        env = {**os.environ, notify.RELAY_ENV: str(endpoints.notify)}
        capture_env = capture_env or {}
        self.children = ([Child("models", models)] if models else []) + [Child("infer", infer_argv, env)] + \
            [Child(f"capture:{n}", a, {**os.environ, **capture_env[n]} if n in capture_env else None,
                   after_ready=n in after_ready) for n, a in captures.items()] + \
            [Child(f"bridge:{n}", a) for n, a in (bridges or {}).items()] + \
            ([Child("web", web)] if web else [])
        self.stopping = False
        self.ready_sent = False
        self.exit_code = 0
        self.reload_requested = self.reexec = False
        self.argv = argv or []               # dfwatch's own arguments, for a reload's exec
        self.check_config = check_config     # () -> the problem with the configuration now, or None

    def _start(self, child: Child) -> None:
        child.proc = subprocess.Popen(child.argv, env=child.env, preexec_fn=die_with_parent)
        child.restart_at = None
        log.info("started", child=child.name, pid=child.proc.pid)

    def _on_exit(self, child: Child, now: float) -> None:
        code = child.proc.returncode
        child.proc = None
        if child.name.startswith("capture:") and code == 0:
            log.info("capture finished (end of file)", child=child.name)
            child.done = True
            return
        if code == PERMANENT_EXIT:  # it said why, once; restarting would only say it again
            child.done = True
            if child.name.startswith("capture:"):
                log.error("stream cannot work; not restarting its capture (see its error above; fix the "
                          "source and restart dfwatch)", child=child.name)
                return
            log.error(f"{child.name} cannot work as configured; not restarting it (see its error above; fix "
                      "it and restart dfwatch)", child=child.name)
            if child.name in ("infer", "models"):
                self.exit_code, self.stopping = PERMANENT_EXIT, True  # systemd: RestartPreventExitStatus=78
            return
        s = self.settings
        child.crashes.append(now)
        while child.crashes and now - child.crashes[0] > s.crash_window:
            child.crashes.popleft()
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        if len(child.crashes) >= s.max_crashes:
            log.error(f"giving up on {child.name}: {len(child.crashes)} crashes within {s.crash_window:g} s "
                      f"(last: {how}); see its log lines above", child=child.name)
            child.done = True
            if child.name == "infer":
                self.exit_code = 1
                self.stopping = True
            return
        delay = min(s.restart_max, s.restart_initial * 2 ** (len(child.crashes) - 1))
        child.restart_at = now + delay
        log.warning("child crashed; restarting", child=child.name, reason=how, restart_in_s=delay,
                    crashes=len(child.crashes))

    def _relay(self, relay: notify.Relay) -> None:
        for message in relay.receive():
            if message == "READY=1":
                if not self.ready_sent:
                    notify.send("READY=1")
                    self.ready_sent = True
                    log.info("ready: models loaded, serving")
            elif message == "WATCHDOG=1" or message.startswith("EXTEND_TIMEOUT_USEC="):
                notify.send(message)

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        signal.signal(signal.SIGHUP, self._on_reload)
        relay = notify.Relay(self.endpoints.notify)
        try:
            for child in self.children:
                if not child.after_ready:
                    self._start(child)
            while not self.stopping:
                if self.reload_requested and self._reload_accepted():
                    break
                self._relay(relay)
                now = time.monotonic()
                for child in self.children:
                    if child.after_ready and self.ready_sent:
                        child.after_ready = False
                        self._start(child)
                    if child.proc is not None and child.proc.poll() is not None:
                        self._on_exit(child, now)
                    if child.restart_at is not None and now >= child.restart_at and not self.stopping:
                        self._start(child)
                time.sleep(0.1)
        finally:
            self._shutdown(stopping=not self.reexec)
            relay.close()
        if self.reexec:
            os.execv(sys.executable, [sys.executable, "-m", "engines.cli", *self.argv])
        return self.exit_code

    def _on_reload(self, signum, frame) -> None:
        self.reload_requested = True

    def _reload_accepted(self) -> bool:
        """SIGHUP (systemctl reload): the configuration is read again and checked; a valid one
        replaces this process in place once the children stopped (exec: the same pid, which
        systemd keeps following), as a restart would; an invalid one is refused with one line
        and nothing stops."""
        self.reload_requested = False
        problem = self.check_config() if self.check_config else None
        if problem:
            log.error(f"reload refused, still running the previous configuration: {problem}")
            return False
        log.info("reloading: stopping the children, then starting again with the configuration as it is now")
        notify.send("RELOADING=1")
        self.reexec = True
        return True

    def _on_signal(self, signum, frame) -> None:
        if not self.stopping:
            log.info("stopping", signal=signal.Signals(signum).name)
        self.stopping = True

    def _shutdown(self, stopping: bool = True) -> None:
        """Stops the producers first (captures, the inference process, the model server), then the
        subscribers (bridges, dashboard), so these still carry the alert ends the inference process
        publishes as it stops; all within stop_timeout."""
        if stopping:
            notify.send("STOPPING=1")
        deadline = time.monotonic() + max(0.5, self.settings.stop_timeout - 0.5)
        subscribers = [c for c in self.children if c.name.startswith("bridge:") or c.name == "web"]
        producers = [c for c in self.children if c not in subscribers]
        # the subscribers get at least a third of the time, whatever the producers take
        self._stop(producers, deadline - max(0.3, (deadline - time.monotonic()) / 3))
        self._stop(subscribers, deadline)
        log.info("stopped")

    def _stop(self, children: list[Child], deadline: float) -> None:
        running = [c for c in children if c.running]
        for c in running:
            c.proc.send_signal(signal.SIGTERM)
        for c in running:
            try:
                c.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("child did not stop in time; killing it", child=c.name)
                c.proc.kill()
                c.proc.wait()


def child_argv(command: str, args_for_child: list[str]) -> list[str]:
    """The command line of a child: this interpreter running the dfwatch CLI."""
    return [sys.executable, "-m", "engines.cli", command, *args_for_child]
