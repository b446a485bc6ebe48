"""dfwatch configuration: typed, validated, overridable.

The schema lives here as pydantic models; `engines/default.yaml` (linked as configs/default.yaml) documents every key with the
same defaults (a test keeps the two in step). Values come, in increasing precedence, from the
defaults, a YAML file, `DFWATCH__SECTION__KEY` environment variables and `--set section.key=v`
command-line overrides. Every error names the key and where the value came from.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from engines.errors import DfwatchError
from engines.secrets import secret_path
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ENV_PREFIX = "DFWATCH__"
# The schema defaults as a commented file (a test keeps the two equal); installed with the package.
DEFAULT_CONFIG_FILE = Path(__file__).with_name("default.yaml")
STREAM_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class ConfigError(DfwatchError):
    """One or more configuration problems; `str()` is one line per problem, ready to print."""
    exit_code = 2

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class Section(BaseModel):
    # strict: YAML and env values already carry types, so "8" for an int is a mistake to report
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class LoggingConfig(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "console", "json"] = "auto"


class ModelConfig(Section):
    bundle: str | None = None
    backend: Literal["auto", "torch", "onnxruntime", "tensorrt", "triton"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "tf32", "fp16", "bf16", "int8"] = "auto"
    cuda_graphs: bool = True
    threads: int = Field(0, ge=0, le=1024)
    trust_checkpoints: bool = False

    @field_validator("threads")
    @classmethod
    def _at_most_cores(cls, v: int) -> int:
        cores = os.cpu_count() or 1
        if v > cores:
            raise ValueError(f"{v} threads exceed the {cores} cores of this machine (0 = one per core)")
        return v


class EndpointsConfig(Section):
    runtime_dir: str | None = None
    frames: str | None = None
    verdicts: str | None = None
    send_hwm: int = Field(2, ge=1, le=100_000)
    recv_hwm: int = Field(2, ge=1, le=100_000)
    pub_hwm: int = Field(1000, ge=1, le=1_000_000)
    curve: bool = False                  # CURVE keys on tcp:// endpoints (daemon/wire/curve.py)
    keys_dir: str | None = None          # what `dfwatch keys generate DIR` wrote
    capture_key: str = "capture"         # the client key pair capture processes present
    subscriber_key: str = "subscriber"   # the client key pair watch, health and bridges present
    allow_insecure_tcp: bool = False

    @field_validator("frames", "verdicts")
    @classmethod
    def _zmq_endpoint(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^(ipc|tcp|inproc)://.+", v):
            raise ValueError(f"'{v}' is not a ZeroMQ endpoint (ipc://PATH or tcp://HOST:PORT)")
        return v

    @model_validator(mode="after")
    def _authenticated_tcp(self) -> "EndpointsConfig":
        tcp = [e for e in (self.frames, self.verdicts) if e and e.startswith("tcp://")]
        if self.curve and not self.keys_dir:
            raise ValueError("curve: true needs keys_dir (run 'dfwatch keys generate DIR')")
        if tcp and not self.curve and not self.allow_insecure_tcp:
            raise ValueError(f"{tcp[0]} is a tcp endpoint without authentication: set curve: true and keys_dir "
                             "(dfwatch keys generate DIR), or allow_insecure_tcp: true on a trusted network")
        return self


class CaptureConfig(Section):
    open_timeout_ms: int = Field(5000, ge=100, le=600_000)
    read_timeout_ms: int = Field(2000, ge=100, le=600_000)
    stall_timeout: float = Field(5.0, gt=0, le=3600)
    reconnect_initial: float = Field(0.5, gt=0, le=3600)
    reconnect_max: float = Field(5.0, gt=0, le=3600)
    max_width: int = Field(640, ge=64, le=8192)
    max_height: int = Field(480, ge=64, le=8192)
    fps: float | None = Field(None, gt=0, le=240)
    pace: bool = True
    loop: bool = False


class FacesConfig(Section):
    detect_width: int = Field(320, ge=64, le=4096)
    min_face_size: int = Field(40, ge=8, le=1024)
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    min_probability: float = Field(0.9, ge=0, le=1)
    margin: float = Field(0.2, ge=0, le=2)
    crop: Literal["box", "ffhq"] = "box"
    select: Literal["all", "largest", "confident"] = "all"
    max_tracks: int = Field(8, ge=1, le=64)
    min_size: float = Field(0.0, ge=0, le=4096)
    track_lost_s: float = Field(1.0, gt=0, le=3600)
    smoothing: int = Field(5, ge=1, le=64)

    @property
    def crop_select(self) -> str:
        """The one-face rule a bundle records for training (`all` is a serving choice: largest)."""
        return "largest" if self.select == "all" else self.select

    @field_validator("thresholds", mode="before")
    @classmethod
    def _list_to_tuple(cls, v: Any) -> Any:
        return tuple(v) if isinstance(v, list) else v

    @field_validator("thresholds")
    @classmethod
    def _probabilities(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if not all(0 <= t <= 1 for t in v):
            raise ValueError(f"thresholds must lie in [0, 1], got {list(v)}")
        return v


class WindowConfig(Section):
    stride: int = Field(8, ge=1, le=1024)
    min_face_fraction: float = Field(0.5, ge=0, le=1)
    evict_after: float = Field(60.0, gt=0, le=86_400)
    max_gap_s: float | None = Field(None, gt=0, le=3600)


class InferenceConfig(Section):
    max_batch: int | None = Field(None, ge=1, le=1024)
    max_wait_ms: int = Field(20, ge=0, le=10_000)
    threshold: float | None = Field(None, ge=0, le=1)
    calibration: str | None = None      # a 'dfwatch calibrate' file: its threshold, unless threshold is set
    status_interval: float = Field(1.0, gt=0, le=3600)
    max_frame_age_s: float = Field(5.0, ge=0, le=3600)


class AlertsConfig(Section):
    enabled: bool = True
    open_after: int = Field(2, ge=1, le=100)
    open_of: int = Field(3, ge=1, le=100)
    close_after: int = Field(3, ge=1, le=100)
    cooldown_s: float = Field(30.0, ge=0, le=86_400)
    update_every: int = Field(4, ge=1, le=10_000)

    @model_validator(mode="after")
    def _opens(self) -> "AlertsConfig":
        if self.open_after > self.open_of:
            raise ValueError(f"open_after ({self.open_after}) cannot exceed open_of ({self.open_of})")
        return self


class EvidenceConfig(Section):
    enabled: bool = True
    dir: str | None = None
    frame_width: int = Field(320, ge=32, le=4096)
    max_bytes: int = Field(2 * 1024 ** 3, ge=0)
    max_age_days: float = Field(30.0, gt=0, le=36_500)
    queue: int = Field(16, ge=1, le=10_000)


class MetricsConfig(Section):
    host: str = "127.0.0.1"
    port: int = Field(9464, ge=0, le=65_535)


class TensorRTConfig(Section):
    min_batch: int = Field(1, ge=1, le=1024)
    opt_batch: int = Field(4, ge=1, le=1024)
    max_batch: int = Field(8, ge=1, le=1024)
    workspace_mb: int = Field(2048, ge=16, le=1_048_576)
    cache_dir: str | None = None

    @model_validator(mode="after")
    def _ordered(self) -> "TensorRTConfig":
        if not self.min_batch <= self.opt_batch <= self.max_batch:
            raise ValueError("needs min_batch <= opt_batch <= max_batch, got "
                             f"{self.min_batch}, {self.opt_batch}, {self.max_batch}")
        return self


class WebConfig(Section):
    """The dashboard (`dfwatch web`, daemon/clients/web.py); `dfwatch run` starts it when enabled."""
    enabled: bool = False
    allow_reviews: bool = False    # the page may mark alerts false alarm / confirmed (only with token_file)
    bind: str = "127.0.0.1:8080"
    token_file: str | None = None
    allow_remote: bool = False

    _token = field_validator("token_file")(lambda cls, v: secret_path(v, "dashboard token", min_length=16))

    @field_validator("bind")
    @classmethod
    def _host_port(cls, v: str) -> str:
        host, _, port = v.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"'{v}' is not HOST:PORT (e.g. 127.0.0.1:8080)")
        return v


def parse_triton_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of triton.url: grpc://HOST:PORT (the default scheme) or http://HOST:PORT.
    Here, torch-free, so that `dfwatch run`'s supervisor reads it for `triton.serve` without loading models."""
    from urllib.parse import urlsplit

    parts = urlsplit(url if "://" in url else f"grpc://{url}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("grpc", "http") or not parts.hostname or not port:
        raise ValueError(f"{url!r}: expected grpc://HOST:PORT or http://HOST:PORT")
    return parts.scheme, parts.hostname, port


class TritonConfig(Section):
    """Models served by NVIDIA Triton (`model.backend: triton`; docs/SCALING.md)."""
    url: str = "grpc://127.0.0.1:8001"
    _url = field_validator("url")(lambda cls, v: (parse_triton_url(v), v)[1])
    timeout_s: float = Field(10.0, gt=0, le=600)
    serve: bool = False                 # `dfwatch run` starts `dfwatch serve-models` for its bundle
    instances: int = Field(1, ge=1, le=64)
    max_batch: int = Field(32, ge=1, le=1024)
    max_queue_delay_us: int = Field(2000, ge=0, le=1_000_000)


class SupervisorConfig(Section):
    max_crashes: int = Field(5, ge=1, le=1000)
    crash_window: float = Field(60.0, gt=0, le=86_400)
    restart_initial: float = Field(1.0, ge=0, le=3600)
    restart_max: float = Field(10.0, ge=0, le=3600)
    stop_timeout: float = Field(5.0, gt=0, le=600)


class StreamConfig(Section):
    name: str
    source: str | int
    pace: bool | None = None
    loop: bool | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not STREAM_NAME.match(v):
            raise ValueError(f"stream name '{v}' must be 1-64 characters of A-Z a-z 0-9 _ . -")
        return v


def parse_broker(url: str) -> tuple[bool, str, int]:
    """(tls, host, port) of mqtt://HOST[:PORT] (1883) or mqtts://HOST[:PORT] (8883, TLS)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"broker {url!r}: the port is not a number (expected mqtt://HOST:PORT)") from None
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError(f"broker {url!r}: expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (TLS)")
    tls = parts.scheme == "mqtts"
    return tls, parts.hostname, port or (8883 if tls else 1883)


def check_webhook_url(url: str, what: str = "webhook URL") -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what} must be http:// or https:// with a host, got {parts.scheme or url!r}")
    return url


class MqttBridgeConfig(Section):
    """An MQTT bridge (daemon/bridges/mqtt.py): Home Assistant discovery, retained states, TLS.
    Each field's description is also its `dfwatch bridge mqtt --OPTION` help."""
    kind: Literal["mqtt"]
    broker: str = Field(description="mqtt://HOST[:PORT], or mqtts://HOST[:PORT] for TLS")
    prefix: str = Field("dfwatch", description="topic prefix")
    username: str | None = Field(None, description="broker user name")
    password_file: str | None = Field(None, description="the broker password, read from this file (not world-readable)")
    verdicts: bool = Field(False, description="also publish every verdict (<prefix>/<stream>/verdict)")
    ca_file: str | None = Field(None, description="mqtts: CA certificate(s) that sign the broker's (default: the system's)")
    cert_file: str | None = Field(None, description="mqtts: client certificate (with key_file)")
    key_file: str | None = Field(None, description="mqtts: client key (not world-readable)")
    discovery: bool = Field(True, description="publish Home Assistant MQTT discovery messages")
    discovery_prefix: str = Field("homeassistant", description="Home Assistant's discovery topic prefix")
    offline_after_s: float = Field(10.0, gt=0, le=3600, description="seconds without a status message before the "
                                   "daemon is declared offline (status comes every second, from its own thread)")
    evidence_url: str | None = Field(None, description="the dashboard's public base URL (https://host:port): alert "
                                     "attributes then carry links to the evidence files")

    _broker = field_validator("broker")(lambda cls, v: (parse_broker(v), v)[1])
    _evidence_url = field_validator("evidence_url")(lambda cls, v: v if v is None else
                                                    check_webhook_url(v, "evidence_url").rstrip("/"))
    _password = field_validator("password_file")(lambda cls, v: secret_path(v, "MQTT password"))
    _key = field_validator("key_file")(lambda cls, v: secret_path(v, "MQTT client key"))

    @model_validator(mode="after")
    def _tls(self) -> "MqttBridgeConfig":
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("a client certificate needs both cert_file and key_file")
        for name in ("ca_file", "cert_file"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{name} {path} does not exist")
        if (self.ca_file or self.cert_file) and not parse_broker(self.broker)[0]:
            raise ValueError("TLS files need a TLS broker: mqtts://HOST[:PORT]")
        return self


class WebhookBridgeConfig(Section):
    """A webhook bridge (daemon/bridges/webhook.py): Standard Webhooks headers, at-least-once delivery.
    Each field's description is also its `dfwatch bridge webhook --OPTION` help."""
    kind: Literal["webhook"]
    url: str = Field(description="http(s) URL that receives each alert as JSON")
    secret_file: str | None = Field(None, description="signing key file (not world-readable): webhook-signature "
                                                      "(Standard Webhooks) and X-Dfwatch-Signature headers")
    queue: int = Field(100, ge=1, le=100_000, description="alerts waiting for the receiver")
    events: Literal["all", "start_end"] = Field("all", description="start_end: only each alert's start and end "
                                                                   "(all: updates too)")

    _url = field_validator("url")(lambda cls, v: check_webhook_url(v))
    _secret = field_validator("secret_file")(lambda cls, v: secret_path(v, "webhook secret"))


# one typed configuration per bridge kind, chosen by `kind` (a new bridge adds its class here)
BRIDGE_CONFIGS = {c.model_fields["kind"].annotation.__args__[0]: c for c in (MqttBridgeConfig, WebhookBridgeConfig)}
BridgeConfig = Annotated[MqttBridgeConfig | WebhookBridgeConfig, Field(discriminator="kind")]


class Config(Section):
    logging: LoggingConfig = LoggingConfig()
    model: ModelConfig = ModelConfig()
    endpoints: EndpointsConfig = EndpointsConfig()
    capture: CaptureConfig = CaptureConfig()
    faces: FacesConfig = FacesConfig()
    window: WindowConfig = WindowConfig()
    inference: InferenceConfig = InferenceConfig()
    alerts: AlertsConfig = AlertsConfig()
    evidence: EvidenceConfig = EvidenceConfig()
    metrics: MetricsConfig = MetricsConfig()
    tensorrt: TensorRTConfig = TensorRTConfig()
    triton: TritonConfig = TritonConfig()
    supervisor: SupervisorConfig = SupervisorConfig()
    web: WebConfig = WebConfig()
    streams: tuple[StreamConfig, ...] = ()
    bridges: tuple[BridgeConfig, ...] = ()

    @field_validator("streams", "bridges", mode="before")
    @classmethod
    def _list_to_tuple(cls, v: Any) -> Any:
        return tuple(v) if isinstance(v, list) else v

    @field_validator("streams")
    @classmethod
    def _unique_streams(cls, v: tuple[StreamConfig, ...]) -> tuple[StreamConfig, ...]:
        names = [s.name for s in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"stream names must be unique, repeated: {', '.join(dupes)}")
        return v

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")


SECTIONS = {name: f.annotation for name, f in Config.model_fields.items() if name not in ("streams", "bridges")}


def _parse_scalar(text: str) -> Any:
    """An override value as YAML would read it ('8' -> 8, 'true' -> True, '[1, 2]' -> list)."""
    try:
        return yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        return text


def _set_override(data: dict, dotted: str, raw: str, origin: str, origins: dict) -> list[str]:
    parts = dotted.lower().split(".")
    if len(parts) != 2 or not all(parts):
        return [f"{origin}: '{dotted}' must name section.key (e.g. window.stride)"]
    section, key = parts
    if section not in SECTIONS:
        return [f"{origin}: unknown section '{section}' (known: {', '.join(SECTIONS)})"]
    block = data.setdefault(section, {})
    if not isinstance(block, dict):
        return []  # the section itself is malformed; validation reports it
    block[key] = _parse_scalar(raw)
    origins[(section, key)] = origin
    return []


def _env_overrides(data: dict, environ: dict, origins: dict) -> list[str]:
    problems: list[str] = []
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX):
            dotted = name[len(ENV_PREFIX):].replace("__", ".")
            problems += _set_override(data, dotted, environ[name], f"environment {name}", origins)
    return problems


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such configuration file"]) from None
    except OSError as e:
        raise ConfigError([f"{path}: cannot read: {e.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError([f"{path}: not valid YAML{where}: {getattr(e, 'problem', e)}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: the top level must be a mapping of sections, got {type(data).__name__}"])
    return data


def _section_model(loc: list[str]) -> Any:
    """The pydantic model a location points into (list indexes skipped), or None."""
    model: Any = Config
    for part in loc:
        if part.isdigit():
            continue
        if model is BridgeConfig:  # a bridge's location names its kind (the discriminator) next
            model = BRIDGE_CONFIGS.get(part)
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return None
        model = field.annotation
        if part == "streams":
            model = StreamConfig
        if part == "bridges":
            model = BridgeConfig
    return model


def _describe(err: dict, file_label: str, origins: dict) -> str:
    """One line per problem: where the value came from, the dotted key, what is wrong."""
    loc = [str(p) for p in err["loc"]]
    if len(loc) >= 2:
        where = origins.get(tuple(loc[:2]), file_label)
    else:  # a rule over a whole section (e.g. tcp without CURVE): wherever its keys were set
        named = sorted({o for (section, _), o in origins.items() if loc and section == loc[0]})
        where = ", ".join(named + ([file_label] if file_label != "defaults" else [])) or file_label
    model_loc = loc
    if len(loc) > 2 and loc[0] == "bridges" and loc[2] in BRIDGE_CONFIGS:
        loc = loc[:2] + loc[3:]  # the kind pydantic puts in the location: bridges.0.mqtt.broker -> bridges.0.broker
    key = ".".join(loc) if loc else "(top level)"
    if err["type"] == "extra_forbidden":
        parent = loc[:-1]
        known = ", ".join(getattr(_section_model(model_loc[:-1]), "model_fields", {}))
        scope = f"section '{'.'.join(parent)}'" if parent else "the top level"
        return f"{where}: unknown key '{loc[-1]}' in {scope}" + (f" (known: {known})" if known else "")
    if err["type"] in ("model_type", "dict_type"):
        return f"{where}: {key}: must be a mapping of keys, got {type(err.get('input')).__name__}"
    msg = err["msg"].removeprefix("Value error, ")
    custom = err["type"] == "value_error"  # our own messages already quote the value
    got = "" if custom or "input" not in err or isinstance(err["input"], dict) else f" (got {err['input']!r})"
    return f"{where}: {key}: {msg}{got}"


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = (),
                environ: dict | None = None) -> Config:
    """The effective configuration: defaults < YAML file < environment < `--set` overrides."""
    environ = os.environ if environ is None else environ
    file_label = str(path) if path is not None else "defaults"
    data = _read_yaml(Path(path)) if path is not None else {}
    origins: dict = {}
    problems = _env_overrides(data, environ, origins)
    for item in overrides:
        dotted, sep, raw = item.partition("=")
        if not sep:
            problems.append(f"--set {item}: expected section.key=value")
            continue
        problems += _set_override(data, dotted.strip(), raw, f"--set {dotted.strip()}", origins)
    if problems:
        raise ConfigError(problems)
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError([_describe(err, file_label, origins) for err in e.errors()]) from None


def with_streams(config: Config, specs: list[str]) -> Config:
    """Adds `NAME=SOURCE` streams from the command line; a same-named configured stream gets the
    new source and keeps its other settings (pace, loop), which is also how a capture started by
    `dfwatch run` rebuilds its configured stream from the source in its environment."""
    streams = {s.name: s for s in config.streams}
    problems = []
    for spec in specs:
        name, sep, source = spec.partition("=")
        if not sep or not source:
            problems.append(f"--stream {spec}: expected NAME=SOURCE (a URL, a file path or a webcam index)")
            continue
        try:
            kept = streams[name].model_dump(exclude={"source"}) if name in streams else {"name": name}
            streams[name] = StreamConfig(**kept, source=source)
        except ValidationError as e:
            problems.append(f"--stream {spec}: {e.errors()[0]['msg'].removeprefix('Value error, ')}")
    if problems:
        raise ConfigError(problems)
    return config.model_copy(update={"streams": tuple(streams.values())})
