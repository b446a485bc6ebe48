"""`dfwatch run | capture | infer | keys | service`: the service's processes (daemon/service/), its
keys and its systemd installation."""
from __future__ import annotations

import argparse
import os
import sys

from daemon.cli.checks import config_problems
from daemon.cli.common import config_problem, daemon_config, on_stop, passthrough, require_bundle, stream_options
from engines.cli import UserError, common_options
from engines.config import ConfigError
from engines.sources import PERMANENT_EXIT, SOURCE_ENV, parse_source, source_kind


def register_run(sub) -> None:
    p = sub.add_parser("run", parents=[common_options()],
                       help="supervise the inference process and one capture process per stream")
    stream_options(p)
    # a configuration error exits 78: systemd's RestartPreventExitStatus, since it stays wrong until fixed
    p.set_defaults(handler=_run, config_error_exit=PERMANENT_EXIT)


def register_capture(sub) -> None:
    p = sub.add_parser("capture", parents=[common_options()],
                       help="read one stream and push its frames to the inference process")
    stream_options(p)
    p.add_argument("--fps", type=float, help="analysis frames per second (default: capture.fps, else the bundle's)")
    p.set_defaults(handler=_capture)


def register_infer(sub) -> None:
    p = sub.add_parser("infer", parents=[common_options()],
                       help="the inference process: rolling windows, models, verdicts on PUB")
    p.add_argument("--bundle", metavar="DIR", help="model bundle directory (overrides model.bundle)")
    p.set_defaults(handler=_infer)  # no --stream: streams are whatever capture processes push


def register_keys(sub) -> None:
    p = sub.add_parser("keys", help="CURVE keys for tcp endpoints (docs/SECURITY.md)")
    ksub = p.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    g = ksub.add_parser("generate", help="write the server key pair (kept if present) and client key pairs into DIR")
    g.add_argument("dir", metavar="DIR", help="keys directory (endpoints.keys_dir); created mode 0700")
    g.add_argument("--client", action="append", dest="clients", metavar="NAME",
                   help="a client key pair to add (repeatable; default: capture and subscriber)")
    g.set_defaults(handler=_keys_generate)


def models_argv(config, bundle_dir: str, args) -> list[str] | None:
    """`dfwatch serve-models` for triton.serve: on this host, at triton.url's gRPC port, HTTP one
    below and metrics one above it (Triton's own 8000/8001/8002 pattern)."""
    if not config.triton.serve:
        return None
    from daemon.service.supervisor import child_argv
    from engines.config import parse_triton_url

    _, _, port = parse_triton_url(config.triton.url)  # a local gRPC address: checks.config_problems
    return child_argv("serve-models", [bundle_dir, "--port", str(port), "--http-port", str(port - 1),
                                       "--metrics-port", str(port + 1)] + passthrough(args))


def _capture(args: argparse.Namespace) -> int:
    import threading

    from daemon.service.capture import stop_on_signal

    stop, finished = threading.Event(), threading.Event()
    stop_on_signal(stop, finished)
    try:
        return _capture_until_stopped(args, stop)
    finally:
        finished.set()


def _capture_until_stopped(args: argparse.Namespace, stop) -> int:
    from daemon.service.capture import Capture
    from daemon.wire.endpoints import resolve
    from engines.logs import bind

    config = daemon_config(args, "capture")
    if len(args.streams) != 1:
        raise UserError("capture takes exactly one --stream NAME=SOURCE (or --stream NAME from the configuration)")
    name = args.streams[0].partition("=")[0]
    stream = next((s for s in config.streams if s.name == name), None)
    if stream is None:
        raise UserError(f"stream '{name}' is not configured: use --stream {name}=SOURCE")
    bind(stream=name)
    fps = args.fps or config.capture.fps
    if fps is None:
        from engines.bundles.manifest import read_manifest

        fps = read_manifest(require_bundle(config)).window.fps
    overrides = {k: v for k, v in (("pace", stream.pace), ("loop", stream.loop)) if v is not None}
    settings = config.capture.model_copy(update=overrides)
    import cv2

    cv2.setNumThreads(1)
    from daemon.wire.curve import client_keys_for

    endpoint = resolve(config.endpoints).frames
    keys = client_keys_for(endpoint, config.endpoints, config.endpoints.capture_key)
    capture = Capture(name, stream.source, settings, fps, endpoint, config.endpoints.send_hwm, keys=keys, stop=stop,
                      connect_wait_s=1.0)
    code = capture.run()
    import threading

    import zmq

    from daemon.service.capture import EOS_WAIT_S

    # term() returns once queued messages (a final end of stream) are delivered or their linger
    # ends; bounded, in case a socket was left open
    closing = threading.Thread(target=zmq.Context.instance().term, daemon=True)
    closing.start()
    closing.join(EOS_WAIT_S + 5)
    return code


def _infer(args: argparse.Namespace) -> int:
    config = daemon_config(args, "infer")
    bundle_dir = require_bundle(config)
    from daemon.wire.endpoints import claim, resolve
    from daemon.service.inference import InferenceServer
    from engines.backends import DEFAULT_MAX_BATCH
    from engines.errors import DfwatchError, as_permanent
    from engines.scoring import stream_analysis
    from engines.pipeline.preprocess import DetectorSettings, FaceDetector
    from engines.pipeline.tracking import TrackingSpec
    from engines.operating_points import operating_threshold

    endpoints = resolve(config.endpoints, create=True)
    claim(endpoints)  # the one daemon of these endpoints: checked before minutes of model loading
    try:
        runners, choice, bundle = _load_models(config, bundle_dir)
        operating_threshold(config, bundle)  # a calibration for another bundle: said once, here
    except DfwatchError as e:
        raise as_permanent(e) from None  # a wrong bundle or calibration stays wrong: not restarted (exit 78)
    detector = FaceDetector(DetectorSettings.from_config(config.faces), device=choice.device)
    server = InferenceServer(config, bundle, runners, choice.backend, detector, endpoints,
                             lambda **kw: stream_analysis(bundle, config.window.stride, config.window.min_face_fraction,
                                                          tracking=TrackingSpec.from_config(config.faces),
                                                          fps=config.capture.fps, **kw),
                             max_batch=config.inference.max_batch or DEFAULT_MAX_BATCH[choice.device])
    on_stop(server.stop.set)
    leave_without_teardown(server.run())


def leave_without_teardown(code: int) -> None:
    """Exits now: the inference process has ended its alerts, flushed its evidence and sent its
    last status; the interpreter's teardown (ONNX Runtime's sessions, torch, hundreds of unmaps)
    took 0.9-1.6 s more and pushed a stop past the supervisor's budget (SIGKILL)."""
    import logging
    import threading

    import zmq

    # what the PUB socket still holds (the alert ends, the last status saying `stopping`) goes out
    # first: term() returns once every socket closed and lingered, bounded in case one was left open
    closing = threading.Thread(target=zmq.Context.instance().term, daemon=True)
    closing.start()
    closing.join(1.0)
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


def _load_models(config, bundle_dir: str):
    """(runners, backend choice, bundle) of the inference process."""
    from daemon.service import notify
    from engines.backends import open_runners
    from engines.backends.tensorrt import TensorRTSettings
    from engines.bundles.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    m = config.model

    def building(part: str) -> None:
        notify.to_supervisor("EXTEND_TIMEOUT_USEC=600000000")  # a TensorRT build takes minutes
        from engines.logs import get_logger

        get_logger().info("building TensorRT engine", part=part)

    runners, choice = open_runners(bundle, m.backend, m.device, m.threads, TensorRTSettings.from_config(config.tensorrt),
                                   on_build=building, precision=m.precision, cuda_graphs=m.cuda_graphs,
                                   triton=(config.triton.url, config.triton.timeout_s))
    return runners, choice, bundle


def _run(args: argparse.Namespace) -> int:
    from daemon.wire.endpoints import LOCK_ENV, claim, resolve
    from daemon.service.supervisor import Supervisor, child_argv
    from engines.logs import get_logger

    config = daemon_config(args, "run")
    problems = config_problems(config, need_bundle=True)  # what `config check` and a reload refuse too
    if problems:
        raise ConfigError(problems)
    bundle_dir = config.model.bundle
    endpoints = resolve(config.endpoints, create=True)
    claim(endpoints)  # the one daemon of these endpoints; its inference process inherits the claim
    os.environ[LOCK_ENV] = str(os.getpid())
    common = passthrough(args) + ["--bundle", bundle_dir]
    # each capture gets its source in its environment: a command line is readable by every local user
    captures = {s.name: child_argv("capture", common + ["--stream", s.name]) for s in config.streams}
    sources = {s.name: {SOURCE_ENV: str(s.source)} for s in config.streams}
    if not captures:
        get_logger().warning("no streams configured: only remote capture processes can feed this daemon")
    bridges = {f"{i}-{b.kind}": child_argv("bridge", ["configured", str(i)] + passthrough(args))
               for i, b in enumerate(config.bridges)}
    web = child_argv("web", passthrough(args)) if config.web.enabled else None
    files = {s.name for s in config.streams if source_kind(parse_source(s.source)) == "file"}
    supervisor = Supervisor(config.supervisor, child_argv("infer", common), captures, endpoints, bridges, sources, web,
                            models_argv(config, bundle_dir, args), after_ready=files, argv=sys.argv[1:],
                            check_config=lambda: config_problem(args))
    return supervisor.run()


def _keys_generate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from daemon.wire.curve import CLIENTS, SERVER, generate
    from engines.config import STREAM_NAME

    clients = args.clients or ["capture", "subscriber"]
    bad = [c for c in clients if not STREAM_NAME.match(c)]
    if bad:
        raise UserError(f"client name '{bad[0]}' must be 1-64 characters of A-Z a-z 0-9 _ . -", exit_code=2)
    root = Path(args.dir)
    for path in generate(root, clients):
        print(f"wrote {path}")
    print(f"server: {root / SERVER}.key_secret stays on the inference host; clients need {root / SERVER}.key and "
          f"their own {root / CLIENTS}/NAME.key_secret; remove {root / CLIENTS}/NAME.key to revoke NAME")
    return 0


def register_service(sub) -> None:
    p = sub.add_parser("service", help="install dfwatch as a systemd service (this installation's executable)")
    ssub = p.add_subparsers(dest="service_command", required=True, metavar="ACTION")
    i = ssub.add_parser("install", help="user, /etc/dfwatch/dfwatch.yaml, docs, units; enable (start once a bundle is set)")
    i.add_argument("--config", default="/etc/dfwatch/dfwatch.yaml", metavar="FILE", help="the service's configuration")
    i.add_argument("--dry-run", action="store_true", help="print what would be done")
    i.add_argument("--allow-home", action="store_true",
                   help="dfwatch, its Python or the bundle live under /home or /root: ProtectHome=read-only "
                        "instead of yes (user dfwatch must be able to read them)")
    i.set_defaults(handler=_service_install)


def _service_install(args: argparse.Namespace) -> int:
    from pathlib import Path

    from daemon.service.install import Installer

    return Installer(Path(args.config), args.dry_run, args.allow_home).install()
