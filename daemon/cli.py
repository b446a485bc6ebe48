"""`dfwatch run | capture | infer | watch | demo`: the daemon's commands (`bench`: daemon/bench.py)."""
from __future__ import annotations

import argparse
import os
import signal
import sys

from engines.cli import UserError, common_options, setup
from engines.families import DEFAULT_FAMILY, FAMILIES, family_names
from engines.sources import SOURCE_ENV, parse_source, source_kind


def _stream_options(p) -> None:
    p.add_argument("--bundle", metavar="DIR", help="model bundle directory (overrides model.bundle)")
    p.add_argument("--stream", metavar="NAME=SOURCE", action="append", default=[], dest="streams",
                   help="add a stream (repeatable); SOURCE is a URL, a file path or a webcam index")


def register_run(sub) -> None:
    p = sub.add_parser("run", parents=[common_options()],
                       help="supervise the inference process and one capture process per stream")
    _stream_options(p)
    p.set_defaults(handler=_run)


def register_capture(sub) -> None:
    p = sub.add_parser("capture", parents=[common_options()],
                       help="read one stream and push its frames to the inference process")
    _stream_options(p)
    p.add_argument("--fps", type=float, help="analysis frames per second (default: capture.fps, else the bundle's)")
    p.set_defaults(handler=_capture)


def register_infer(sub) -> None:
    p = sub.add_parser("infer", parents=[common_options()],
                       help="the inference process: rolling windows, models, verdicts on PUB")
    p.add_argument("--bundle", metavar="DIR", help="model bundle directory (overrides model.bundle)")
    p.set_defaults(handler=_infer)  # no --stream: streams are whatever capture processes push


def register_watch(sub) -> None:
    p = sub.add_parser("watch", parents=[common_options()], help="subscribe and print verdicts")
    p.add_argument("--stream", help="only this stream")
    p.add_argument("--json", action="store_true", help="JSON lines even on a TTY")
    p.add_argument("--endpoint", help="PUB endpoint to subscribe to (default: the configured one)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for a publisher (default 5)")
    p.add_argument("--count", type=int, help="exit after this many verdicts")
    p.add_argument("--alerts", action="store_true", help="JSON output: alert messages (start/update/end) too")
    p.add_argument("--status", action="store_true", dest="states",
                   help="JSON output: a line whenever a stream's state changes (running, backoff, ended, ...)")
    p.set_defaults(handler=_watch)


def register_health(sub) -> None:
    p = sub.add_parser("health", parents=[common_options()],
                       help="exit 0 if the daemon publishes status and every stream runs, else 1 with the reason")
    p.add_argument("--max-age", type=float, default=5.0, metavar="S",
                   help="seconds to wait for a status message (default 5; status comes every second)")
    p.add_argument("--endpoint", help="PUB endpoint to subscribe to (default: the configured one)")
    p.set_defaults(handler=_health)


def register_scan(sub) -> None:
    p = sub.add_parser("scan", parents=[common_options()],
                       help="is this video fake? score whole files with the daemon's own analysis",
                       description="Scores each file's windows as the daemon would and gives each file a verdict "
                                   "by the alert rule. Exit 0: all real; 1: at least one fake; 2: bad usage or an "
                                   "unreadable file, which wins over 1 (the others are still scanned); 3: no face "
                                   "found (none fake).")
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files, or folders (their video files are scanned)")
    p.add_argument("--bundle", metavar="DIR", help="model bundle directory (overrides model.bundle)")
    p.add_argument("--json", action="store_true", help="JSON lines: one per window, then one per file (all name the file)")
    p.add_argument("--report", metavar="DIR", help="write a report per file: DIR/<file>.html (file facts, model, score timeline, "
                        "most suspect moments, their faces) and DIR/<file>.json")
    p.set_defaults(handler=_scan)


def register_web(sub) -> None:
    p = sub.add_parser("web", parents=[common_options()],
                       help="the dashboard: streams, live score timelines, alerts with evidence, in a browser")
    p.add_argument("--bind", metavar="HOST:PORT", help="where to listen (default web.bind: 127.0.0.1:8080)")
    p.add_argument("--endpoint", help="PUB endpoint to subscribe to (default: the configured one)")
    p.add_argument("--evidence", metavar="DIR", help="evidence directory to serve (default: evidence.dir)")
    p.add_argument("--token-file", metavar="FILE", help="access token file (needed beyond loopback)")
    p.add_argument("--allow-remote", action="store_true", help="allow binding beyond loopback (with --token-file)")
    p.set_defaults(handler=_web)


def web_settings(config, bind, token_file, allow_remote, evidence):
    """(host, port, token, evidence dir) for the dashboard; refuses a non-loopback bind without
    --allow-remote and a token."""
    from pathlib import Path

    from daemon.evidence import default_dir
    from daemon.web import WebError, is_loopback, parse_bind, read_token

    host, port = parse_bind(bind or config.web.bind)
    token = read_token(token_file or config.web.token_file)
    if not is_loopback(host):
        if not (allow_remote or config.web.allow_remote):
            raise WebError(f"refusing to serve the dashboard on {host}: beyond loopback it needs --allow-remote "
                           "(web.allow_remote) and --token-file (web.token_file)")
        if token is None:
            raise WebError(f"serving the dashboard on {host} needs a token: --token-file FILE (web.token_file)")
    ev = evidence or config.evidence.dir
    return host, port, token, Path(ev) if ev else default_dir()


def _web(args: argparse.Namespace) -> int:
    from daemon.endpoints import resolve
    from daemon.web import Dashboard, serve

    config = setup(args, "web")
    host, port, token, evidence = web_settings(config, args.bind, args.token_file, args.allow_remote, args.evidence)
    endpoint = args.endpoint or resolve(config.endpoints).verdicts
    return serve(Dashboard(endpoint, evidence, token, subscriber_keys(config, endpoint)), host, port)


def register_keys(sub) -> None:
    p = sub.add_parser("keys", help="CURVE keys for tcp endpoints (docs/SECURITY.md)")
    ksub = p.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    g = ksub.add_parser("generate", help="write the server key pair (kept if present) and client key pairs into DIR")
    g.add_argument("dir", metavar="DIR", help="keys directory (endpoints.keys_dir); created mode 0700")
    g.add_argument("--client", action="append", dest="clients", metavar="NAME",
                   help="a client key pair to add (repeatable; default: capture and subscriber)")
    g.set_defaults(handler=_keys_generate)


def register_demo(sub) -> None:
    p = sub.add_parser("demo", parents=[common_options()],
                       help="run the daemon on sample footage with a demo bundle (no weights needed)")
    p.add_argument("--footage", metavar="VIDEO", help="video to analyse (default: the fetched franck.mp4)")
    p.add_argument("--rebuild", action="store_true", help="rebuild the demo bundle")
    p.add_argument("--family", choices=family_names(), default=DEFAULT_FAMILY,
                   help="model family: " + "; ".join(f"{f.name}: {f.summary}" for f in FAMILIES.values())
                        + f" (default {DEFAULT_FAMILY})")
    p.set_defaults(handler=_demo)


# ---- shared pieces -------------------------------------------------------------------------

def daemon_config(args: argparse.Namespace, role: str):
    """Configuration with the command line's --bundle and --stream applied; logging set up."""
    from engines.config import with_streams

    config = setup(args, role)
    if getattr(args, "bundle", None):
        config = config.model_copy(update={"model": config.model.model_copy(update={"bundle": args.bundle})})
    specs = [s for s in getattr(args, "streams", []) if "=" in s]
    if role == "capture" and os.environ.get(SOURCE_ENV) and len(args.streams) == 1 and "=" not in args.streams[0]:
        specs = [f"{args.streams[0]}={os.environ[SOURCE_ENV]}"]  # from `dfwatch run`: not on the command line
    return with_streams(config, specs) if specs else config


def usage_error(load):
    """`load()`, with a bundle that cannot be used reported as bad usage (exit 2), as scan's codes say
    (exit 1 means 'fake' there)."""
    from engines.errors import DfwatchError

    try:
        return load()
    except DfwatchError as e:
        raise UserError(str(e), exit_code=2) from None


def require_bundle(config) -> str:
    if not config.model.bundle:
        raise UserError("no model bundle: pass --bundle DIR or set model.bundle (make one with "
                        "'dfwatch engines bundle', or try 'dfwatch demo')")
    from engines.bundles.manifest import read_manifest

    read_manifest(config.model.bundle)  # a clear error now rather than in a child
    return config.model.bundle


def models_argv(config, bundle_dir: str, args) -> list[str] | None:
    """`dfwatch serve-models` for triton.serve: on this host, at triton.url's gRPC port, HTTP one
    below and metrics one above it (Triton's own 8000/8001/8002 pattern)."""
    from daemon.supervisor import child_argv
    from engines.triton import parse_url

    if not config.triton.serve:
        return None
    scheme, host, port = parse_url(config.triton.url)
    if scheme != "grpc" or host not in ("127.0.0.1", "localhost", "::1"):
        raise UserError(f"triton.serve starts a server on this host: triton.url must be grpc://127.0.0.1:PORT, "
                        f"not {config.triton.url}", exit_code=2)
    return child_argv("serve-models", [bundle_dir, "--port", str(port), "--http-port", str(port - 1),
                                       "--metrics-port", str(port + 1)] + passthrough(args))


def check_sources(streams) -> None:
    """Fails now, with one line, for a source that can never work: a bad scheme or webcam index,
    a missing file or one that decodes no frame. A camera that is down is not checked: its
    capture process waits for it."""
    from daemon.capture import first_frame_check
    from engines.sources import SourceError, parse_source, source_kind

    for stream in streams:
        try:
            source = parse_source(stream.source)
            if source_kind(source) == "file":
                first_frame_check(source)
        except SourceError as e:
            raise SourceError(f"stream '{stream.name}': {e}") from None


def config_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the configuration as it is now (a reload checks it first), or None."""
    from engines.config import ConfigError, load_config, with_streams
    from engines.errors import DfwatchError

    try:
        config = load_config(args.config, args.overrides)
        specs = [s for s in args.streams if "=" in s]
        config = with_streams(config, specs) if specs else config
        if args.bundle or config.model.bundle:
            from engines.bundles.manifest import read_manifest

            read_manifest(args.bundle or config.model.bundle)
        check_sources(config.streams)
    except ConfigError as e:
        return "; ".join(e.problems)
    except DfwatchError as e:
        return str(e)
    return None


def subscriber_keys(config, endpoint: str):
    """The CURVE keys a subscriber of `endpoint` presents (None for ipc, or insecure tcp)."""
    from daemon.curve import client_keys_for

    return client_keys_for(endpoint, config.endpoints, config.endpoints.subscriber_key)


def on_stop(callback) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: callback())


def passthrough(args: argparse.Namespace) -> list[str]:
    """Command-line options a child process must see as well."""
    out = []
    if args.config:
        out += ["--config", args.config]
    for item in args.overrides:
        out += ["--set", item]
    if args.log_level:
        out += ["--log-level", args.log_level]
    if args.log_format:
        out += ["--log-format", args.log_format]
    return out


# ---- handlers ------------------------------------------------------------------------------

def _capture(args: argparse.Namespace) -> int:
    import threading

    from daemon.capture import stop_on_signal

    stop, finished = threading.Event(), threading.Event()
    stop_on_signal(stop, finished)
    try:
        return _capture_until_stopped(args, stop)
    finally:
        finished.set()


def _capture_until_stopped(args: argparse.Namespace, stop) -> int:
    from daemon.capture import Capture
    from daemon.endpoints import resolve
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
    from daemon.curve import client_keys_for

    endpoint = resolve(config.endpoints).frames
    keys = client_keys_for(endpoint, config.endpoints, config.endpoints.capture_key)
    capture = Capture(name, stream.source, settings, fps, endpoint, config.endpoints.send_hwm, keys=keys, stop=stop)
    code = capture.run()
    import threading

    import zmq

    from daemon.capture import EOS_WAIT_S

    # term() returns once queued messages (a final end of stream) are delivered or their linger
    # ends; bounded, in case a socket was left open
    closing = threading.Thread(target=zmq.Context.instance().term, daemon=True)
    closing.start()
    closing.join(EOS_WAIT_S + 5)
    return code


def _infer(args: argparse.Namespace) -> int:
    config = daemon_config(args, "infer")
    bundle_dir = require_bundle(config)
    from daemon.endpoints import claim, resolve
    from daemon.inference import InferenceServer
    from engines.backends import DEFAULT_MAX_BATCH
    from engines.errors import DfwatchError, as_permanent
    from engines.pipeline.driver import stream_analysis
    from engines.pipeline.preprocess import DetectorSettings, FaceDetector

    endpoints = resolve(config.endpoints, create=True)
    claim(endpoints)  # the one daemon of these endpoints: checked before minutes of model loading
    try:
        runners, choice, bundle = _load_models(config, bundle_dir)
    except DfwatchError as e:
        raise as_permanent(e) from None  # a wrong bundle stays wrong: not restarted (exit 78)
    detector = FaceDetector(DetectorSettings.from_config(config.faces), device=choice.device)
    server = InferenceServer(config, bundle, runners, choice.backend, detector, endpoints,
                             lambda: stream_analysis(bundle, config.window.stride, config.window.min_face_fraction),
                             max_batch=config.inference.max_batch or DEFAULT_MAX_BATCH[choice.device])
    on_stop(server.stop.set)
    return server.run()


def _load_models(config, bundle_dir: str):
    """(runners, backend choice, bundle) of the inference process."""
    from daemon import notify
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
    from daemon.endpoints import LOCK_ENV, claim, resolve
    from daemon.supervisor import Supervisor, child_argv
    from engines.logs import get_logger

    config = daemon_config(args, "run")
    bundle_dir = require_bundle(config)
    check_sources(config.streams)
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
    if web:
        web_settings(config, None, None, None, None)  # its mistakes fail `run` now, not a child five times
    files = {s.name for s in config.streams if source_kind(parse_source(s.source)) == "file"}
    supervisor = Supervisor(config.supervisor, child_argv("infer", common), captures, endpoints, bridges, sources, web,
                            models_argv(config, bundle_dir, args), after_ready=files, argv=sys.argv[1:],
                            check_config=lambda: config_problem(args))
    return supervisor.run()


def _scan(args: argparse.Namespace) -> int:
    from pathlib import Path

    from daemon.scan import Scanner, expand_inputs, exit_code, human_line, json_lines, terminal_progress, write_report
    from engines.backends import open_runners
    from engines.bundles.bundle import load_bundle
    from engines.pipeline.preprocess import DetectorSettings, FaceDetector

    config = daemon_config(args, "scan")
    bundle = usage_error(lambda: load_bundle(require_bundle(config)))  # 2: bad usage, as scan documents
    m = config.model
    runners, choice = open_runners(bundle, m.backend, m.device, m.threads, precision=m.precision,
                                   cuda_graphs=m.cuda_graphs, triton=(config.triton.url, config.triton.timeout_s))
    scanner = Scanner(config, bundle, runners, FaceDetector(DetectorSettings.from_config(config.faces),
                                                            device=choice.device), choice.backend)
    results = []
    for path in expand_inputs(args.videos):
        progress = None if args.json else terminal_progress(path)
        result = scanner.scan(path, keep_sheets=bool(args.report), progress=progress)
        if progress:
            print("\r\x1b[K", end="", file=sys.stderr)
        results.append(result)
        if result.error:
            print(f"dfwatch scan: {result.error}", file=sys.stderr)
        elif result.warning:
            print(f"dfwatch scan: {result.path}: {result.warning}", file=sys.stderr)
        print("\n".join(json_lines(result)) if args.json else human_line(result, scanner.threshold), flush=True)
        if args.report and not result.error:
            page = write_report(result, Path(args.report), scanner.threshold, scanner.rules)
            print(f"report: {page}", file=sys.stderr if args.json else sys.stdout)
    return exit_code(results)


def _keys_generate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from daemon.curve import CLIENTS, SERVER, generate
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


def _watch(args: argparse.Namespace) -> int:
    from daemon.endpoints import holder, resolve
    from daemon.watch import watch

    config = setup(args, "watch")
    endpoints = resolve(config.endpoints)
    endpoint = args.endpoint or endpoints.verdicts
    keys = subscriber_keys(config, endpoint)
    try:
        return watch(endpoint, args.stream, args.json, args.timeout, args.count, alerts=args.alerts,
                     states=args.states, keys=keys, starting=lambda: holder(endpoints))
    except KeyboardInterrupt:
        return 0


def _health(args: argparse.Namespace) -> int:
    from daemon.endpoints import resolve
    from daemon.watch import health

    config = setup(args, "health")
    endpoint = args.endpoint or resolve(config.endpoints).verdicts
    code, line = health(endpoint, args.max_age, subscriber_keys(config, endpoint))
    print(line, file=sys.stdout if code == 0 else sys.stderr)
    return code


def _demo(args: argparse.Namespace) -> int:
    from daemon.demo import run_demo

    config = setup(args, "demo")
    return run_demo(config, args, passthrough(args))
