"""Configuration: defaults == configs/default.yaml, and the exact messages users see."""
from __future__ import annotations

import os
import subprocess

import pytest
import yaml

from conftest import DFWATCH, REPO
from engines.config import Config, ConfigError, load_config, with_streams

DEFAULT_YAML = REPO / "configs" / "default.yaml"


def write(tmp_path, text: str):
    path = tmp_path / "dfwatch.yaml"
    path.write_text(text)
    return path


def problems(path, environ=None, overrides=()):
    with pytest.raises(ConfigError) as e:
        load_config(path, overrides, environ=environ or {})
    return e.value.problems


def test_default_yaml_documents_exactly_the_schema_defaults():
    assert load_config(DEFAULT_YAML, environ={}) == Config()
    text = DEFAULT_YAML.read_text()
    for section, model in Config.model_fields.items():
        keys = getattr(model.annotation, "model_fields", {})
        for key in keys:  # every key is present and commented in the documented file
            line = next(line for line in text.splitlines() if line.strip().startswith(f"{key}:"))
            assert "#" in line, f"{section}.{key} has no comment in default.yaml"


def test_unknown_key(tmp_path):
    path = write(tmp_path, "window:\n  strid: 4\n")
    assert problems(path) == [
        f"{path}: unknown key 'strid' in section 'window' (known: stride, min_face_fraction, evict_after, max_gap_s)"]


def test_unknown_section(tmp_path):
    path = write(tmp_path, "windw:\n  stride: 4\n")
    assert problems(path)[0].startswith(f"{path}: unknown key 'windw' in the top level (known: logging, model,")


def test_wrong_type(tmp_path):
    path = write(tmp_path, "window:\n  stride: eight\n")
    assert problems(path) == [f"{path}: window.stride: Input should be a valid integer (got 'eight')"]
    path = write(tmp_path, "capture:\n  pace: 1\n")
    assert problems(path) == [f"{path}: capture.pace: Input should be a valid boolean (got 1)"]


def test_out_of_range(tmp_path):
    path = write(tmp_path, "window:\n  stride: 0\n")
    assert problems(path) == [f"{path}: window.stride: Input should be greater than or equal to 1 (got 0)"]
    path = write(tmp_path, f"model:\n  threads: {os.cpu_count() + 1}\n")
    assert problems(path) == [f"{path}: model.threads: {os.cpu_count() + 1} threads exceed the "
                              f"{os.cpu_count()} cores of this machine (0 = one per core)"]


def test_every_problem_is_reported_at_once(tmp_path):
    path = write(tmp_path, "window:\n  stride: 0\n  min_face_fraction: 2\n")
    assert len(problems(path)) == 2


def test_env_override_wins_over_file(tmp_path):
    path = write(tmp_path, "window:\n  stride: 4\n")
    assert load_config(path, environ={"DFWATCH__WINDOW__STRIDE": "6"}).window.stride == 6
    assert load_config(path, environ={"DFWATCH__CAPTURE__LOOP": "true"}).capture.loop is True


def test_env_override_errors_name_the_variable(tmp_path):
    path = write(tmp_path, "")
    assert problems(path, {"DFWATCH__WINDOW__STRIDE": "x"}) == [
        "environment DFWATCH__WINDOW__STRIDE: window.stride: Input should be a valid integer (got 'x')"]
    assert problems(path, {"DFWATCH__WINDOWS__STRIDE": "1"})[0].startswith(
        "environment DFWATCH__WINDOWS__STRIDE: unknown section 'windows' (known: logging,")


def test_set_override_wins_over_env(tmp_path):
    path = write(tmp_path, "window:\n  stride: 4\n")
    c = load_config(path, ["window.stride=3"], environ={"DFWATCH__WINDOW__STRIDE": "6"})
    assert c.window.stride == 3
    assert problems(path, overrides=["window.stride=-1"]) == [
        "--set window.stride: window.stride: Input should be greater than or equal to 1 (got -1)"]
    assert problems(path, overrides=["stride=3"]) == [
        "--set stride: 'stride' must name section.key (e.g. window.stride)"]


def test_missing_and_malformed_files(tmp_path):
    assert problems(tmp_path / "nope.yaml") == [f"{tmp_path / 'nope.yaml'}: no such configuration file"]
    path = write(tmp_path, "window: [\n")
    assert problems(path)[0].startswith(f"{path}: not valid YAML (line 2, column 1)")
    path = write(tmp_path, "- 1\n")
    assert problems(path) == [f"{path}: the top level must be a mapping of sections, got list"]


def test_streams_from_file_and_command_line(tmp_path):
    path = write(tmp_path, "streams:\n  - name: door\n    source: rtsp://cam/1\n")
    c = with_streams(load_config(path, environ={}), ["desk=0", "door=/tmp/x.mp4"])
    assert [(s.name, s.source) for s in c.streams] == [("door", "/tmp/x.mp4"), ("desk", "0")]
    with pytest.raises(ConfigError, match="expected NAME=SOURCE"):
        with_streams(c, ["justaname"])
    path = write(tmp_path, "streams:\n  - {name: a, source: x}\n  - {name: a, source: y}\n")
    assert problems(path) == [f"{path}: streams: stream names must be unique, repeated: a"]


def test_a_streams_own_pace_and_loop_survive_a_new_source(tmp_path):
    """`dfwatch run` hands each capture its source in its environment and the capture rebuilds
    the configured stream from it: its pace and loop must come along."""
    path = write(tmp_path, "streams:\n  - {name: door, source: a.mp4, pace: false, loop: true}\n")
    (door,) = with_streams(load_config(path, environ={}), ["door=b.mp4"]).streams
    assert (door.source, door.pace, door.loop) == ("b.mp4", False, True)


def test_a_section_rule_names_where_its_keys_were_set():
    (line,) = problems(None, overrides=["endpoints.frames=tcp://0.0.0.0:7700"])
    assert line.startswith("--set endpoints.frames: endpoints: ") and "without authentication" in line
    (line,) = problems(None, environ={"DFWATCH__ENDPOINTS__VERDICTS": "tcp://0.0.0.0:7701"})
    assert line.startswith("environment DFWATCH__ENDPOINTS__VERDICTS: endpoints: ")


def test_config_check_command(tmp_path):
    good = write(tmp_path, "window:\n  stride: 4\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DFWATCH__")}
    r = subprocess.run(DFWATCH + ["config", "check", str(good)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert yaml.safe_load(r.stdout)["window"]["stride"] == 4
    bad = tmp_path / "bad.yaml"
    bad.write_text("window:\n  strid: 4\n")
    r = subprocess.run(DFWATCH + ["config", "check", str(bad)], capture_output=True, text=True, env=env)
    assert r.returncode == 2
    assert r.stderr == (f"dfwatch config check: configuration error: {bad}: unknown key 'strid' in section "
                        "'window' (known: stride, min_face_fraction, evict_after, max_gap_s)\n")
    assert "Traceback" not in r.stderr


def test_a_triton_url_is_checked_at_load(tmp_path):
    """What triton.url means is read without torch (the supervisor starts a model server from it)."""
    from engines.backends.triton_naming import TritonUrlError, parse_url
    from engines.config import parse_triton_url

    path = write(tmp_path, "triton:\n  url: ftp://127.0.0.1:8001\n")
    assert problems(path) == [f"{path}: triton.url: 'ftp://127.0.0.1:8001': expected grpc://HOST:PORT or http://HOST:PORT"]
    assert parse_triton_url("127.0.0.1:8001") == ("grpc", "127.0.0.1", 8001)
    assert parse_triton_url("http://models:8000") == ("http", "models", 8000)
    with pytest.raises(TritonUrlError, match="^triton.url 'grpc://models:x': expected"):
        parse_url("grpc://models:x")  # a URL from elsewhere (a benchmark's server): one line, exit 2


def test_config_check_refuses_what_run_would_fail_on(tmp_path):
    """Secret files missing, world-readable or too short, a webhook URL that is not http(s), a
    broker port that is not a number, a text file named .mp4: `config check` says so (exit 2),
    one line each, instead of `run` failing later (a traceback, or five restarts)."""
    secret, readable, short = tmp_path / "ok.secret", tmp_path / "open.secret", tmp_path / "short.token"
    for path, text, mode in ((secret, "s3cret\n", 0o640), (readable, "s3cret\n", 0o644), (short, "abc\n", 0o600)):
        path.write_text(text)
        path.chmod(mode)
    fake_video = tmp_path / "clip.mp4"
    fake_video.write_text("not a video")
    path = write(tmp_path, f"""
web:
  token_file: {short}
bridges:
  - {{kind: mqtt, broker: "127.0.0.1:notaport"}}
  - {{kind: mqtt, broker: mqtt://127.0.0.1, password_file: {tmp_path / 'missing'}}}
  - {{kind: webhook, url: ftp://hooks.example/x, secret_file: {secret}}}
  - {{kind: webhook, url: https://hooks.example/x, secret_file: {readable}}}
  - {{kind: mqtt, broker: mqtt://127.0.0.1, ca_file: {secret}}}
""")
    assert problems(path) == [
        f"{path}: web.token_file: the dashboard token in {short} is shorter than 16 characters: use e.g. "
        "'openssl rand -hex 24'",
        f"{path}: bridges.0.broker: broker '127.0.0.1:notaport': the port is not a number (expected mqtt://HOST:PORT)",
        f"{path}: bridges.1.password_file: MQTT password file {tmp_path / 'missing'} does not exist",
        f"{path}: bridges.2.url: webhook URL must be http:// or https:// with a host, got 'ftp'",
        f"{path}: bridges.3.secret_file: webhook secret file {readable} is readable by every user (mode 0644): "
        f"chmod o-rwx {readable}",
        f"{path}: bridges.4: TLS files need a TLS broker: mqtts://HOST[:PORT]"]
    video = write(tmp_path, f"streams:\n  - {{name: lobby, source: {fake_video}}}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DFWATCH__")}
    r = subprocess.run(DFWATCH + ["config", "check", str(video)], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and r.stderr == (f"dfwatch config check: configuration error: streams: lobby: cannot open "
                                              f"video file {fake_video}: is it a video OpenCV/FFmpeg can decode?\n")
