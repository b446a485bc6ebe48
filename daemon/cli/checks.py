"""`dfwatch config check | default`, and the one check of a configuration that `config check`,
`dfwatch run`'s start and a reload (SIGHUP) all make: what passes here starts, what fails here
fails in all three with the same lines. Torch-free (the supervisor runs it)."""
from __future__ import annotations

import argparse
import sys

from engines.cli import common_options
from engines.config import DEFAULT_CONFIG_FILE, ConfigError, load_config


def config_problems(config, need_bundle: bool = False) -> list[str]:
    """Everything in `config` that `dfwatch run` would refuse or crash-loop on, one line each,
    each naming its key: sources that can never work, a bundle that is missing or unreadable, a
    calibration that is missing, malformed or another bundle's, a dashboard that would not start,
    an evidence directory dfwatch must not write in, a model server it cannot start."""
    problems = _source_problems(config.streams)
    bundle, problem = _bundle(config, need_bundle)
    problems += [problem] if problem else []
    problems += _calibration_problems(config, bundle)
    problems += _web_problems(config)
    problems += _evidence_problems(config)
    problems += _model_server_problems(config)
    return problems


def _source_problems(streams) -> list[str]:
    from engines.sources import SourceError, first_frame_check, parse_source, source_kind

    problems = []
    for stream in streams:
        try:
            source = parse_source(stream.source)
            if source_kind(source) == "file":
                first_frame_check(source)  # a text file named .mp4 fails here, not in a capture process
        except SourceError as e:
            problems.append(f"streams: {stream.name}: {e}")
    return problems


def _bundle(config, need_bundle: bool):
    """(the bundle read from its manifest, without hashing its files, or None; the problem)."""
    from engines.bundles.bundle import Bundle
    from engines.bundles.manifest import read_manifest
    from engines.errors import DfwatchError

    if not config.model.bundle:
        return None, ("model.bundle: no model bundle: pass --bundle DIR or set model.bundle (make one with "
                      "'dfwatch engines bundle', or try 'dfwatch demo')") if need_bundle else None
    try:
        from pathlib import Path

        return Bundle(Path(config.model.bundle), read_manifest(config.model.bundle)), None
    except DfwatchError as e:
        return None, f"model.bundle: {e}"


def _calibration_problems(config, bundle) -> list[str]:
    from engines.operating_points import CalibrationError, read_calibration

    if not config.inference.calibration:
        return []
    try:
        read_calibration(config.inference.calibration, bundle)
    except CalibrationError as e:
        return [str(e)]
    return []


def _web_problems(config) -> list[str]:
    if not config.web.enabled:
        return []
    from daemon.cli.clients import web_settings
    from engines.errors import DfwatchError

    try:
        web_settings(config, None, None, None, None, config.web.allow_reviews)
    except DfwatchError as e:
        return [f"web: {e}"]
    return []


def _evidence_problems(config) -> list[str]:
    if not (config.evidence.enabled and config.alerts.enabled):
        return []
    from daemon.outcomes.evidence import default_dir
    from daemon.outcomes.store import EvidenceDirError, check_evidence_dir

    try:
        check_evidence_dir(config.evidence.dir or default_dir())
    except EvidenceDirError as e:
        return [str(e)]
    return []


def _model_server_problems(config) -> list[str]:
    from engines.config import parse_triton_url

    if not config.triton.serve:
        return []
    scheme, host, _ = parse_triton_url(config.triton.url)
    if scheme != "grpc" or host not in ("127.0.0.1", "localhost", "::1"):
        return [f"triton.serve starts a server on this host: triton.url must be grpc://127.0.0.1:PORT, "
                f"not {config.triton.url}"]
    return []


def register_config(sub) -> None:
    p = sub.add_parser("config", help="check a configuration file and print the effective settings",
                       description="Configuration tools.")
    csub = p.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    c = csub.add_parser("check", parents=[common_options(config=False)],
                        help="validate FILE (+ environment overrides) as `dfwatch run` would, and print the "
                             "effective configuration")
    c.add_argument("file", nargs="?", help="YAML file (omit to check the packaged default file and environment)")
    c.add_argument("--set", metavar="SECTION.KEY=VALUE", action="append", default=[], dest="overrides")
    c.set_defaults(handler=_config_check)
    d = csub.add_parser("default", help="print the default configuration file, every key with a comment "
                                        "(a starting point: dfwatch config default > dfwatch.yaml)")
    d.set_defaults(handler=_config_default)


def _config_check(args: argparse.Namespace) -> int:
    import yaml

    from engines.sources import mask_source

    config = load_config(args.file or DEFAULT_CONFIG_FILE, args.overrides)  # ConfigError is printed by main()
    problems = config_problems(config)
    if problems:
        raise ConfigError(problems)
    sys.stdout.write(mask_source(yaml.safe_dump(config.to_dict(), sort_keys=False)))
    return 0


def _config_default(args: argparse.Namespace) -> int:
    sys.stdout.write(DEFAULT_CONFIG_FILE.read_text())
    return 0
