"""Starting a local Triton server: the `tritonserver` binary and Python backend of the
`nvidia-pytriton` wheel (CPU; `scripts/setup.sh` unpacks them into `.cache/tritonserver`).

The wheel pins numpy < 2 and so does its Python backend (with numpy 2 every output arrives
empty: "output tensor shape does not match size"), while dfwatch uses numpy 2. So the wheel is not
installed as a package: its server distribution is unpacked into a folder found through
`DFWATCH_TRITONSERVER_DIR`, the checkout's `.cache/tritonserver` or `~/.cache/dfwatch/tritonserver`,
next to a small virtual environment `python/` (numpy < 2, onnxruntime) for the backend's stub,
which finds its Python through PATH; `LD_LIBRARY_PATH` carries the interpreter's library, as
PyTriton's install notes require. `scripts/setup.sh` prepares both. On a GPU host the same
repository (with `--platform tensorrt`) runs in NGC's `tritonserver` container instead.
"""
from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path

from engines.cache import user_cache_dir
from engines.errors import DfwatchError

DIR_ENV = "DFWATCH_TRITONSERVER_DIR"


class ServerMissing(DfwatchError):
    exit_code = 2


def server_home() -> Path:
    """The unpacked wheel: a folder holding pytriton/tritonserver and nvidia_pytriton.libs."""
    candidates = [Path(os.environ[DIR_ENV])] if os.environ.get(DIR_ENV) else []
    candidates += [Path(__file__).resolve().parents[2] / ".cache" / "tritonserver",
                   user_cache_dir("tritonserver")]
    for home in candidates:
        if (home / "pytriton" / "tritonserver" / "bin" / "tritonserver").is_file() and \
                (home / "python" / "bin" / "python").is_file():
            return home
    raise ServerMissing(
        "no tritonserver found: 'scripts/install-triton.sh DIR' unpacks it from the nvidia-pytriton wheel "
        f"with the Python environment its backend needs (scripts/setup.sh does it for the checkout); then set {DIR_ENV}=DIR")


def backends_dir(home: Path, work: Path) -> Path:
    """A backend directory whose Python backend has the stub for this interpreter's version."""
    dist = home / "pytriton" / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = dist / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise ServerMissing(f"the Triton Python backend has no stub for Python {version} (it has "
                            f"{', '.join(sorted(p.name for p in (dist / 'python_backend_stubs').iterdir()))})")
    python = work / "backends" / "python"
    python.mkdir(parents=True, exist_ok=True)
    for source in [*(dist / "backends" / "python").iterdir(), stub]:
        target = python / source.name
        if not target.exists():
            shutil.copy2(source, target)
    return work / "backends"


def server_env(home: Path) -> dict:
    """The environment the server and its Python-backend stubs need: the wheel's libraries (the
    stub copied next to the backend no longer finds them by its rpath), the interpreter's library,
    and the backend's own Python first on PATH (numpy < 2, onnxruntime)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    libs = str(home / "nvidia_pytriton.libs")
    env["LD_LIBRARY_PATH"] = ":".join(p for p in (libdir, libs, env.get("LD_LIBRARY_PATH", "")) if p)
    env["PATH"] = f"{home / 'python' / 'bin'}:{env.get('PATH', '')}"
    return env


def server_command(home: Path, repository: Path, work: Path, grpc_port: int, http_port: int,
                   metrics_port: int) -> list[str]:
    return [str(home / "pytriton" / "tritonserver" / "bin" / "tritonserver"),
            f"--model-repository={repository}", f"--backend-directory={backends_dir(home, work)}",
            f"--grpc-port={grpc_port}", f"--http-port={http_port}", f"--metrics-port={metrics_port}",
            "--allow-metrics=true", "--allow-gpu-metrics=false", "--exit-on-error=true", "--strict-readiness=true",
            "--exit-timeout-secs=3",
            f"--cache-directory={home / 'pytriton' / 'tritonserver' / 'caches'}",
            "--backend-config=python,shm-default-byte-size=4194304", "--backend-config=python,shm-growth-byte-size=1048576",
            f"--backend-config=python,shm-region-prefix-name=dfwatch{grpc_port}-", "--pinned-memory-pool-byte-size=0",
            "--log-verbose=0"]


def _die_with_parent() -> None:
    """In the server's process before exec: SIGTERM when serve-models dies, even by SIGKILL."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _reap_group(pgid: int) -> None:
    """Kills what is left of the server's process group (its triton_python_backend_stub processes)."""
    import os
    import signal

    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def serve(bundle, repository: Path, work: Path, bind: str, grpc_port: int, http_port: int, metrics_port: int,
          instances: int, max_batch: int, queue_delay_us: int, threads: int = 1) -> int:
    """Writes the bundle's Python-platform repository and runs tritonserver over it until SIGTERM;
    logs one line when every model is ready. `threads`: ONNX Runtime threads per model instance.
    Returns the server's exit code."""
    import signal
    import subprocess
    import time
    import urllib.request

    from engines.logs import get_logger
    from engines.triton.repository import write_repository

    log = get_logger()
    home = server_home()
    names = write_repository(bundle, repository, "python", instances, max_batch, queue_delay_us)
    command = server_command(home, repository, work, grpc_port, http_port, metrics_port) + \
        [f"--grpc-address={bind}", f"--http-address={bind}", f"--metrics-address={bind}"]
    server_log = work / "tritonserver.log"  # its own lines; the Python-backend stubs write there too
    with open(server_log, "wb") as out:
        # its own process group (signals are forwarded below), so that the Python-backend stubs it
        # starts can be reaped with it: a server killed with -9 leaves them behind otherwise
        proc = subprocess.Popen(command, env={**server_env(home), "DFWATCH_TRITON_THREADS": str(threads)},
                                stdout=out, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
                                start_new_session=True)
    stopping = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: (stopping.append(1), proc.send_signal(signal.SIGTERM)))
    ready = f"http://{'127.0.0.1' if bind in ('0.0.0.0', '::') else bind}:{http_port}/v2/health/ready"
    deadline, announced = time.monotonic() + 120, False
    while proc.poll() is None:
        if not announced and not stopping and time.monotonic() < deadline:
            try:
                announced = urllib.request.urlopen(ready, timeout=1).status == 200
            except OSError:
                pass
            if announced:
                log.info("model server ready", grpc=f"{bind}:{grpc_port}", http=f"{bind}:{http_port}",
                         metrics=f"{bind}:{metrics_port}", models=names, bundle=bundle.id, instances=instances)
        time.sleep(0.3)
    _reap_group(proc.pid)
    for region in Path("/dev/shm").glob(f"dfwatch{grpc_port}-*"):  # a killed server leaves its Python-backend memory
        region.unlink(missing_ok=True)
    if stopping:
        return 0
    errors = [line for line in server_log.read_text(errors="replace").splitlines()
              if line.startswith("E") and "CudaDriverHelper" not in line]  # that one: no GPU, as expected
    raise ServerMissing(f"tritonserver exited with code {proc.returncode}"
                        + (f": {errors[-1][:300]}" if errors else " (killed?)"))

