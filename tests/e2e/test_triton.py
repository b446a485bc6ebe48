"""Scale-out through NVIDIA Triton: the real `tritonserver` of the nvidia-pytriton wheel on loopback
(scripts/install-triton.sh), serving test bundles' parts to `dfwatch infer` processes."""
from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO
from helpers.daemon import DFWATCH, Subscriber, daemon_env, free_port, one_error, start, stop

SERVER = REPO / ".cache" / "tritonserver"
pytestmark = pytest.mark.skipif(not (SERVER / "python" / "bin" / "python").is_file(),
                                reason="needs the Triton server unpacked by scripts/install-triton.sh (setup.sh runs it)")
SETTINGS = ["--set", "window.stride=2", "--set", "inference.max_frame_age_s=0"]


class ModelServer:
    """`dfwatch serve-models BUNDLE` on free loopback ports; start/kill/restart."""

    def __init__(self, bundle, tmp_path, queue_delay_us: int = 2000):
        self.bundle, self.tmp, self.delay = bundle, tmp_path, queue_delay_us
        self.grpc, self.http, self.metrics = free_port(), free_port(), free_port()
        self.proc = None

    @property
    def url(self) -> str:
        return f"grpc://127.0.0.1:{self.grpc}"

    def start(self) -> None:
        self.proc = start(["serve-models", str(self.bundle), "--port", str(self.grpc), "--http-port", str(self.http),
                           "--metrics-port", str(self.metrics), "--max-queue-delay-us", str(self.delay)],
                          daemon_env(self.tmp), self.tmp / "serve.log")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{self.http}/v2/health/ready", timeout=1).status == 200:
                    return
            except OSError:
                time.sleep(0.3)
        raise AssertionError("the model server did not become ready:\n" + (self.tmp / "serve.log").read_text()[-2000:])

    def kill(self) -> None:
        """SIGKILL to tritonserver itself (a crash); serve-models then exits."""
        from helpers.daemon import children

        for pid in children(self.proc.pid):
            os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        # its Python-backend stubs go with it (serve-models reaps the server's process group)
        left = [p for p in Path("/proc").glob("[0-9]*") if f"dfwatch{self.grpc}-".encode() in _cmdline(p)]
        assert not left, f"stubs outlived the server: {left}"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            assert stop(self.proc, timeout=40) == 0


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


def infer(bundle, runtime, url, log, *extra):
    runtime.mkdir(exist_ok=True)
    return start(["infer", "--bundle", str(bundle), "--set", "model.backend=triton", "--set", f"triton.url={url}",
                  "--set", "triton.timeout_s=5", *SETTINGS, *extra], daemon_env(runtime), log)


def push_file(footage, runtime, stream: str, loop: bool = False) -> subprocess.Popen:
    """A real capture process reading the footage unpaced into an inference process."""
    return subprocess.Popen(DFWATCH + ["capture", "--stream", f"{stream}={footage / 'franck.mp4'}", "--fps", "4",
                                       "--set", "capture.pace=false", "--set", f"capture.loop={str(loop).lower()}"],
                            env=daemon_env(runtime), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# DLDFD goes through Triton in the two-process test below; ICPR (224-px faces) and StyleGRU (three parts) here
@pytest.mark.parametrize("family_bundle, supervised", [("icpr_bundle", True), ("small_bundle", False)])
def test_verdicts_through_triton_equal_onnxruntime(family_bundle, supervised, request, footage, tmp_path):
    """Same frames, same windows: the Triton backend's scores equal in-process ONNX Runtime's.
    `supervised`: `dfwatch run` with triton.serve starts the model server as one of its children."""
    from engines.backends import open_runners
    from engines.bundles.bundle import load_bundle
    from engines.pipeline.preprocess import FaceDetector

    bundle_dir = request.getfixturevalue(family_bundle)
    runtime, log = tmp_path / "run", tmp_path / "infer.log"
    server, capture = ModelServer(bundle_dir, tmp_path), None
    if supervised:
        runtime.mkdir()
        proc = start(["run", "--bundle", str(bundle_dir), "--stream", f"a={footage / 'franck.mp4'}",
                      "--set", "capture.pace=false", "--set", "capture.fps=4", "--set", "model.backend=triton",
                      "--set", "triton.serve=true", "--set", f"triton.url={server.url}", *SETTINGS],
                     daemon_env(runtime), log)
    else:
        server.start()
        proc = infer(bundle_dir, runtime, server.url, log)
    sub = Subscriber(f"ipc://{runtime}/verdicts")
    try:
        sub.wait_for(lambda s: s.statuses, 90, "the inference process", log)
        assert sub.statuses[-1].backend == "triton"
        if not supervised:
            capture = push_file(footage, runtime, "a")
        sub.wait_for(lambda s: len(s.of("a")) >= 6, 120, "verdicts through Triton", log)
        if supervised:
            assert "model server ready" in log.read_text()  # the child `dfwatch run` started
            assert "libtorch" not in (Path("/proc") / str(proc.pid) / "maps").read_text()  # triton.url read torch-free
        else:  # another bundle of the same family against this server: refused at start, one line
            other = request.getfixturevalue("bundle_dir")
            r = subprocess.run(DFWATCH + ["infer", "--bundle", str(other), "--set", "model.backend=triton",
                                          "--set", f"triton.url={server.url}"], env=daemon_env(tmp_path / "other"),
                               capture_output=True, text=True, timeout=60)
            line = one_error(r.stderr)
            # 78: permanent (the supervisor and systemd do not restart it, so the line is said once)
            assert r.returncode == 78 and line.startswith(f"dfwatch infer: part style: the Triton server at {server.url} "
                                                         "serves stylegru.style with ONNX sha256 "), line
            assert line.count("...") == 2  # both checksums, shortened
    finally:
        sub.close()
        if capture:
            capture.kill()
        assert stop(proc, timeout=30) == 0
        server.stop()
    from itertools import islice

    from daemon.service.capture import file_frames
    from engines.scoring import score_frames

    bundle = load_bundle(bundle_dir)
    runners, _ = open_runners(bundle, "onnxruntime", "cpu")
    frames = [(pixels, seq, pos / 1000, pos / 1000) for seq, (pixels, pos, _, _) in
              enumerate(islice(file_frames(str(footage / "franck.mp4"), 4.0, 640, 480), 30))]
    expected = {w.inputs.window: w for w in score_frames(frames, bundle, runners, FaceDetector(), stride=2, end=False)}
    served = sub.of("a")[:6]
    assert [v.window for v in served] == list(range(6))
    for v in served:
        assert v.label == expected[v.window].decision.label
        if v.score is not None:
            assert abs(v.score - expected[v.window].score) < 1e-5


def test_two_inference_processes_share_one_server_which_survives_a_restart(dldfd_bundle, footage, tmp_path):
    import tritonclient.grpc as grpc

    # a request waits up to 100 ms for company: the other process's requests, which come every few
    # hundred ms (face detection runs in the inference processes)
    server = ModelServer(dldfd_bundle, tmp_path, queue_delay_us=100_000)
    server.start()
    procs, captures, subs = [], [], []
    try:
        for name in ("one", "two"):
            runtime = tmp_path / name
            procs.append(infer(dldfd_bundle, runtime, server.url, tmp_path / f"{name}.log"))
            subs.append(Subscriber(f"ipc://{runtime}/verdicts"))
        for name, sub in zip(("one", "two"), subs):
            sub.wait_for(lambda s: s.statuses, 60, f"inference process {name}", tmp_path / f"{name}.log")
            captures.append(push_file(footage, tmp_path / name, name, loop=True))
        for name, sub in zip(("one", "two"), subs):
            sub.wait_for(lambda s: len(s.of(name)) >= 3, 90, f"verdicts for {name}", tmp_path / f"{name}.log")
        client = grpc.InferenceServerClient(f"127.0.0.1:{server.grpc}")

        def merged() -> tuple[int, int]:  # (requests, executions): fewer executions = requests batched together
            stats = client.get_inference_statistics("dldfd.frame", as_json=True)["model_stats"][0]
            return int(stats["inference_stats"]["success"]["count"]), int(stats.get("execution_count", 0))
        deadline = time.monotonic() + 60
        requests, executions = merged()
        while time.monotonic() < deadline and not (requests >= 10 and executions < requests):
            time.sleep(1)
            requests, executions = merged()
        assert requests >= 10 and executions < requests, (requests, executions)  # the dynamic batcher at work

        server.kill()  # the model server dies mid-run
        for name, sub in zip(("one", "two"), subs):
            sub.wait_for(lambda s: s.stream(name).dropped.get("model_error", 0) > 0,
                         30, f"model_error counted by {name}", tmp_path / f"{name}.log")
        assert all(p.poll() is None for p in procs)
        server.start()  # same ports: the processes reconnect by themselves
        for name, sub in zip(("one", "two"), subs):
            sub.verdicts.clear()
            sub.wait_for(lambda s: len(s.of(name)) >= 2, 90, f"verdicts for {name} after the restart",
                         tmp_path / f"{name}.log")
    finally:
        for c in captures:
            c.kill()
        for s in subs:
            s.close()
        for p in procs:
            assert stop(p) == 0
        server.stop()
