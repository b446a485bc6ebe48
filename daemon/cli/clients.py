"""`dfwatch watch | health | scan | web | demo`: the clients (daemon/clients/)."""
from __future__ import annotations

import argparse
import sys

from daemon.cli.common import daemon_config, passthrough, require_bundle, subscriber_keys, usage_error
from engines.cli import UserError, common_options, setup
from engines.families import DEMO_FAMILY, FAMILIES, demo_family_names


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
    p.add_argument("--max-loop-age", type=float, default=60.0, metavar="S",
                   help="unhealthy when the inference loop has not turned for S seconds (default 60: a stuck model call)")
    p.add_argument("--endpoint", help="PUB endpoint to subscribe to (default: the configured one)")
    p.set_defaults(handler=_health)


def register_scan(sub) -> None:
    p = sub.add_parser("scan", parents=[common_options()],
                       help="is this video fake? score whole files with the daemon's own analysis",
                       description="Scores each file's windows as the daemon would and gives each file a verdict "
                                   "by the alert rule. Exit 0: all real; 1: at least one fake; 2: bad usage or an "
                                   "unreadable file, which wins over 1 (the others are still scanned); 3: no face "
                                   "found (none fake); 4: no verdict (an untrained bundle, without "
                                   "--allow-untrained).")
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files, or folders (their video files are scanned)")
    p.add_argument("--bundle", metavar="DIR", help="model bundle directory (overrides model.bundle)")
    p.add_argument("--json", action="store_true", help="JSON lines: one per window, then one per file (all name the file)")
    p.add_argument("--report", metavar="DIR", help="write a report per file: DIR/<file>.html (file facts, model, score timeline, "
                        "most suspect moments, their faces) and DIR/<file>.json")
    p.add_argument("--allow-untrained", action="store_true",
                   help="give FAKE/REAL verdicts with an untrained (demo) bundle too; without it such a bundle's "
                        "files get 'no verdict: untrained model' (exit 4), since its scores mean nothing")
    p.set_defaults(handler=_scan)


def register_eval(sub) -> None:
    p = sub.add_parser("eval", parents=[common_options()],
                       help="what a bundle is worth on labelled footage: AUC (95 %% interval), TPR/FPR, per manipulation",
                       description="Scores every file with scan's analysis and reports per file and overall: AUC "
                                   "with a 95 %% bootstrap interval, accuracy and TPR/FPR at the bundle's threshold, "
                                   "TPR at FPR 1 %% and 10 %%, AUC per manipulation; with --out a table, JSON and a "
                                   "ROC plot (PNG).")
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument("--real", nargs="+", default=[], metavar="PATH", help="real videos, or folders of them")
    p.add_argument("--fake", nargs="+", default=[], metavar="PATH",
                   help="fake videos or folders; a folder's subfolder names the manipulation of the files in it "
                        "(else the folder's own name), NAME=PATH names it outright")
    p.add_argument("--out", metavar="DIR", help="write report.json, report.md and roc.png there")
    p.add_argument("--json", action="store_true", help="JSON lines: one per file, then the figures")
    p.set_defaults(handler=_eval)


def register_calibrate(sub) -> None:
    p = sub.add_parser("calibrate", parents=[common_options()],
                       help="choose the threshold that keeps false alerts within a budget, on footage you know is real")
    p.add_argument("bundle", metavar="BUNDLE", help="the model bundle to calibrate")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--real", nargs="+", metavar="VIDEO_OR_DIR",
                        help="footage known to be real (your cameras): files, or folders of them; each file counts "
                             "as one camera's footage")
    source.add_argument("--from-daemon", action="store_true",
                        help="the window scores a running daemon publishes for --stream (streams you declare real), "
                             "for --hours")
    source.add_argument("--from-reviews", nargs="?", const="", metavar="EVIDENCE_DIR",
                        help="what reviewed alerts (the dashboard's false alarm / confirmed marks) say about the "
                             "threshold (default: evidence.dir); reports, writes nothing")
    p.add_argument("--stream", action="append", default=[], metavar="NAME", dest="real_streams",
                   help="--from-daemon: a stream known to be real (repeat for several)")
    p.add_argument("--hours", type=float, default=1.0,
                   help="--from-daemon: how long to collect, from the first verdict of the streams (default 1)")
    p.add_argument("--endpoint", help="--from-daemon: PUB endpoint (default: the configured one)")
    p.add_argument("--false-alerts-per-day", type=float, default=1.0, metavar="N", dest="budget",
                   help="the budget: false alerts per camera per day, held at the 95%% upper bound (default 1)")
    p.add_argument("--out", default="calibration.json", metavar="FILE",
                   help="the calibration file to write (default calibration.json); serve it with "
                        "inference.calibration: FILE")
    p.set_defaults(handler=_calibrate)


def register_web(sub) -> None:
    p = sub.add_parser("web", parents=[common_options()],
                       help="the dashboard: streams, live score timelines, alerts with evidence, in a browser")
    p.add_argument("--bind", metavar="HOST:PORT", help="where to listen (default web.bind: 127.0.0.1:8080)")
    p.add_argument("--endpoint", help="PUB endpoint to subscribe to (default: the configured one)")
    p.add_argument("--evidence", metavar="DIR", help="evidence directory to serve (default: evidence.dir)")
    p.add_argument("--token-file", metavar="FILE", help="access token file (needed beyond loopback)")
    p.add_argument("--allow-remote", action="store_true", help="allow binding beyond loopback (with --token-file)")
    p.add_argument("--allow-reviews", action="store_true",
                   help="let the page mark alerts false alarm / confirmed (needs --token-file; web.allow_reviews)")
    p.set_defaults(handler=_web)


def register_demo(sub) -> None:
    p = sub.add_parser("demo", parents=[common_options()],
                       help="run the daemon on sample footage: MesoNet's published weights (shipped), or another "
                            "family's stand-ins (no weights needed, no network)")
    p.add_argument("--footage", metavar="VIDEO", help="video to analyse (default: the fetched franck.mp4)")
    p.add_argument("--rebuild", action="store_true", help="rebuild the demo bundle")
    p.add_argument("--family", choices=demo_family_names(), default=DEMO_FAMILY,
                   help="model family: " + "; ".join(f"{n}: {FAMILIES[n].summary}" for n in demo_family_names())
                        + f" (default {DEMO_FAMILY}: a real, trained detector; the others run stand-in weights "
                          "whose scores mean nothing)")
    p.set_defaults(handler=_demo)


def web_settings(config, bind, token_file, allow_remote, evidence, allow_reviews=False):
    """(host, port, tokens, evidence dir) for the dashboard; refuses a non-loopback bind without
    --allow-remote and a token, and reviews without a token."""
    from pathlib import Path

    from daemon.outcomes.evidence import default_dir
    from daemon.clients.web import WebError, is_loopback, parse_bind, read_tokens

    host, port = parse_bind(bind or config.web.bind)
    token = read_tokens(token_file or config.web.token_file)
    if not is_loopback(host):
        if not (allow_remote or config.web.allow_remote):
            raise WebError(f"refusing to serve the dashboard on {host}: beyond loopback it needs --allow-remote "
                           "(web.allow_remote) and --token-file (web.token_file)")
        if token is None:
            raise WebError(f"serving the dashboard on {host} needs a token: --token-file FILE (web.token_file)")
    if allow_reviews and token is None:
        raise WebError("--allow-reviews (web.allow_reviews) needs --token-file (web.token_file): reviews change "
                       "the evidence store, the page stays read-only without a token")
    ev = evidence or config.evidence.dir
    return host, port, token, Path(ev) if ev else default_dir()


def _web(args: argparse.Namespace) -> int:
    from daemon.wire.endpoints import resolve
    from daemon.clients.web import Dashboard, serve

    config = setup(args, "web")
    reviews = args.allow_reviews or config.web.allow_reviews
    host, port, token, evidence = web_settings(config, args.bind, args.token_file, args.allow_remote, args.evidence,
                                               reviews)
    endpoint = args.endpoint or resolve(config.endpoints).verdicts
    return serve(Dashboard(endpoint, evidence, token, subscriber_keys(config, endpoint), reviews), host, port)


def _scan(args: argparse.Namespace) -> int:
    from pathlib import Path

    from daemon.clients.scan import expand_inputs, exit_code, human_line, json_lines, terminal_progress, write_report
    from engines.operating_points import operating_threshold
    from engines.bundles.bundle import load_bundle

    config = daemon_config(args, "scan")
    bundle = usage_error(lambda: load_bundle(require_bundle(config)))  # 2: bad usage, as scan documents
    usage_error(lambda: operating_threshold(config, bundle))  # a calibration for another bundle: before any model
    scanner = usage_error(lambda: _scanner(config, bundle))  # a wrong calibration: 2
    results = []
    for path in expand_inputs(args.videos):
        progress = None if args.json else terminal_progress(path)
        result = scanner.scan(path, keep_sheets=bool(args.report), progress=progress)
        if not bundle.trained and not args.allow_untrained:
            result.withheld = "untrained model"   # its scores mean nothing: neither FAKE nor REAL
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


def _scanner(config, bundle):
    """The scan path's analysis of files (`scan`, `calibrate`): the bundle's runners and the detector."""
    from daemon.clients.scan import Scanner
    from engines.backends import open_runners
    from engines.pipeline.preprocess import DetectorSettings, FaceDetector

    m = config.model
    runners, choice = open_runners(bundle, m.backend, m.device, m.threads, precision=m.precision,
                                   cuda_graphs=m.cuda_graphs, triton=(config.triton.url, config.triton.timeout_s))
    detector = FaceDetector(DetectorSettings.from_config(config.faces), device=choice.device)
    return Scanner(config, bundle, runners, detector, choice.backend)


def _eval(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from daemon.clients.evaluate import evaluate, labelled_inputs, summary_lines, write_outputs
    from daemon.clients.scan import terminal_progress
    from engines.bundles.bundle import load_bundle

    config = daemon_config(args, "eval")
    if not args.real and not args.fake:
        raise UserError("give labelled footage: --real PATH... and --fake PATH...", exit_code=2)
    bundle = usage_error(lambda: load_bundle(args.bundle))
    scanner = usage_error(lambda: _scanner(config, bundle))
    items = labelled_inputs(args.real, args.fake)
    results = []
    for i, item in enumerate(items, 1):
        progress = None if args.json else terminal_progress(f"{i}/{len(items)} {Path(item.path).name}")
        results.append(scanner.scan(item.path, progress=progress))
        if progress:
            print("\r\x1b[K", end="", file=sys.stderr)
    ev = evaluate(items, results, scanner.threshold)
    provenance = scanner.provenance()
    if args.json:
        for row in ev.rows:
            print(json.dumps({"type": "file", **row}))
        print(json.dumps({"type": "figures", **ev.figures, "notes": ev.notes, "model": provenance}))
    else:
        untrained = ", UNTRAINED: its scores mean nothing" if provenance["untrained"] else ""
        print(f"bundle {provenance['model']} (sha256 {provenance['bundle_checksum'][:12]}){untrained}")
        for row in ev.rows:
            score = "-" if row["score"] is None else f"{row['score']:.3f}"
            print(f"  {row['label']:4} {row['manipulation'][:18]:18} {score:>6} {row['verdict']:10} {row['file']}")
        print("\n".join(summary_lines(ev)))
    if args.out:
        for path in write_outputs(ev, Path(args.out), provenance):
            print(f"wrote {path}", file=sys.stderr if args.json else sys.stdout)
    return 2 if any(row["error"] for row in ev.rows) else 0


def _calibrate(args: argparse.Namespace) -> int:
    from daemon.clients.calibrate import check_supports, footage_hours, footage_windows
    from daemon.clients.scan import expand_inputs
    from daemon.outcomes.alerts import AlertRules
    from engines.bundles.bundle import load_bundle

    config = daemon_config(args, "calibrate")
    if args.budget <= 0:
        raise UserError("--false-alerts-per-day must be above 0", exit_code=2)
    bundle = usage_error(lambda: load_bundle(args.bundle))
    if args.from_reviews is not None:
        return _calibrate_from_reviews(args, config, bundle)
    rules = AlertRules.from_config(config.alerts)
    if args.from_daemon:
        return _calibrate_from_daemon(args, config, bundle, rules)
    paths = expand_inputs(args.real)
    check_supports(footage_hours(paths), args.budget)  # before any scan: said at once (exit 2)
    # scored at the bundle's own threshold: a calibration already in the configuration plays no part
    uncalibrated = config.model_copy(update={"inference": config.inference.model_copy(update={"calibration": None})})
    windows, hours, used = footage_windows(_scanner(uncalibrated, bundle), paths, rules.open_of)
    if not used:
        raise UserError("no usable real footage: nothing to calibrate on", exit_code=2)
    return _write_calibration(args, bundle, windows, hours, rules, used)


def _write_calibration(args, bundle, windows: list[dict], hours: float, rules, sources: list[str]) -> int:
    from pathlib import Path

    from daemon.clients.calibrate import choose, report
    from engines.operating_points import write_calibration

    op = bundle.manifest.operating_points
    result = choose(windows, hours, args.budget, rules, op["roc"] if op else None)  # too little: exit 2
    write_calibration(Path(args.out), result.as_file(bundle, sources))
    print(report(result, bundle))
    print(f"wrote {args.out}: serve it with --set inference.calibration={args.out} (or in the configuration)")
    return 0


def _calibrate_from_daemon(args, config, bundle, rules) -> int:
    from daemon.clients.calibrate import daemon_windows
    from daemon.wire.endpoints import resolve
    from daemon.wire.subscriber import subscribe

    if not args.real_streams:
        raise UserError("--from-daemon needs --stream NAME: the streams you know show only real people", exit_code=2)
    endpoint = args.endpoint or resolve(config.endpoints).verdicts
    sub = subscribe(endpoint, None, keys=subscriber_keys(config, endpoint))
    print(f"dfwatch calibrate: collecting the window scores of {', '.join(args.real_streams)} from {endpoint} "
          f"for {args.hours:g} h", file=sys.stderr, flush=True)
    try:
        windows, hours = daemon_windows(sub, set(args.real_streams), args.hours, bundle.id)  # another model: exit 2
    finally:
        sub.close()
    if not windows:
        raise UserError(f"no verdict of {', '.join(args.real_streams)} came from {endpoint} in {args.hours:g} h: is "
                        "the daemon running, with these streams?", exit_code=2)
    return _write_calibration(args, bundle, windows, hours, rules,
                              [f"daemon:{name}" for name in sorted(args.real_streams)])


def _calibrate_from_reviews(args, config, bundle) -> int:
    from pathlib import Path

    from daemon.clients.calibrate import reviews_report
    from daemon.outcomes.evidence import default_dir
    from daemon.outcomes.reviews import reviewed_alerts
    from engines.operating_points import operating_threshold

    root = Path(args.from_reviews or config.evidence.dir or default_dir())
    reviewed = [r for r in reviewed_alerts(root) if r["messages"][-1].get("model") == bundle.id]
    if not reviewed:
        raise UserError(f"no reviewed alert of bundle {bundle.id} in {root}: mark alerts in the dashboard "
                        "(dfwatch web --allow-reviews)", exit_code=2)
    print(reviews_report(reviewed, operating_threshold(config, bundle)[0]))
    return 0


def _watch(args: argparse.Namespace) -> int:
    from daemon.wire.endpoints import holder, resolve
    from daemon.clients.watch import watch

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
    from daemon.wire.endpoints import resolve
    from daemon.clients.watch import health

    config = setup(args, "health")
    endpoint = args.endpoint or resolve(config.endpoints).verdicts
    code, line = health(endpoint, args.max_age, subscriber_keys(config, endpoint), args.max_loop_age)
    print(line, file=sys.stdout if code == 0 else sys.stderr)
    return code


def _demo(args: argparse.Namespace) -> int:
    from daemon.clients.demo import run_demo

    config = setup(args, "demo")
    return run_demo(config, args, passthrough(args))
