"""Who may connect to a tcp:// endpoint: CURVE keys, checked by pyzmq's ZAP authenticator.

ZeroMQ's CURVE encrypts a connection and proves each side's key. The inference process is the
CURVE server of both its sockets (frames PULL, verdicts PUB); captures and subscribers are
clients. Only clients whose public key file lies in `<keys_dir>/clients/` get in: adding or
removing a `NAME.key` file grants or revokes a client within `RELOAD_S`. `dfwatch keys generate
DIR` writes the layout:

    DIR/server.key              the server's public key (every client needs it)
    DIR/server.key_secret       the server's secret key (only the inference host)
    DIR/clients/NAME.key        an allowed client's public key
    DIR/clients/NAME.key_secret that client's secret key (only on that client's host)

A secret file is looked up first in `$CREDENTIALS_DIRECTORY` (systemd's LoadCredential=), then in
DIR. `ipc://` endpoints need no keys: the runtime directory's permissions (0700) protect them. A
tcp endpoint without CURVE is refused unless `endpoints.allow_insecure_tcp` is set.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from engines.errors import DfwatchError
from engines.logs import Throttle, get_logger

log = get_logger()
SERVER = "server"
CLIENTS = "clients"
RELOAD_S = 5.0  # how soon an added or removed client key takes effect


class CurveError(DfwatchError):
    """Keys missing or unreadable, or a tcp endpoint without authentication."""
    exit_code = 2


@dataclass(frozen=True)
class Keys:
    """What one socket needs: its own key pair and, for a client, the server's public key."""
    public: bytes
    secret: bytes
    server_public: bytes | None = None


# ---- key files -----------------------------------------------------------------------------

def generate(directory: Path, clients: list[str]) -> list[Path]:
    """Writes the server's key pair (kept if present) and each named client's; returns new files."""
    written = []
    umask = os.umask(0o077)  # secret files are never readable by others, not even for a moment
    try:
        (directory / CLIENTS).mkdir(parents=True, exist_ok=True)
        for folder, name in [(directory, SERVER)] + [(directory / CLIENTS, c) for c in clients]:
            if (folder / f"{name}.key_secret").exists():
                continue
            public, secret = zmq.auth.create_certificates(folder, name)
            os.chmod(public, 0o644)
            written += [Path(public), Path(secret)]
    finally:
        os.umask(umask)
    return written


def _secret_file(folder: Path, name: str) -> Path:
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials and (Path(credentials) / f"{name}.key_secret").is_file():
        return Path(credentials) / f"{name}.key_secret"
    return folder / f"{name}.key_secret"


def _load(path: Path, secret: bool) -> tuple[bytes, bytes | None]:
    try:
        public, secret_key = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as e:
        raise CurveError(f"cannot read CURVE key {path}: {e}; create keys with 'dfwatch keys generate DIR' "
                         "and set endpoints.keys_dir to DIR") from None
    if secret and not secret_key:
        raise CurveError(f"{path} holds no secret key: use the .key_secret file 'dfwatch keys generate' wrote")
    return public, secret_key


def server_keys(keys_dir: str) -> Keys:
    public, secret = _load(_secret_file(Path(keys_dir), SERVER), secret=True)
    return Keys(public, secret)


def client_keys(keys_dir: str, client: str) -> Keys:
    root = Path(keys_dir)
    public, secret = _load(_secret_file(root / CLIENTS, client), secret=True)
    server_public, _ = _load(root / f"{SERVER}.key", secret=False)
    return Keys(public, secret, server_public)


# ---- which endpoints need keys -------------------------------------------------------------

def needs_keys(endpoint: str, settings) -> bool:
    """True for a tcp endpoint with endpoints.curve on; raises for one without CURVE unless the
    user opted in (then warns: every start)."""
    if not endpoint.startswith("tcp://"):
        return False
    if settings.curve:
        if not settings.keys_dir:
            raise CurveError("endpoints.curve is on but endpoints.keys_dir is not set: "
                             "run 'dfwatch keys generate DIR' and set endpoints.keys_dir: DIR")
        return True
    if not settings.allow_insecure_tcp:
        raise CurveError(f"{endpoint} is a tcp endpoint without authentication (anyone who can reach it may "
                         "inject frames or read verdicts): set endpoints.curve: true and endpoints.keys_dir "
                         "(dfwatch keys generate DIR), or endpoints.allow_insecure_tcp: true on a trusted network")
    log.warning("tcp endpoint without authentication or encryption (endpoints.allow_insecure_tcp)", endpoint=endpoint)
    return False


def client_keys_for(endpoint: str, settings, client: str) -> Keys | None:
    """The keys a client of `endpoint` must present (None: none needed)."""
    return client_keys(settings.keys_dir, client) if needs_keys(endpoint, settings) else None


# ---- sockets -------------------------------------------------------------------------------

def as_client(sock: zmq.Socket, keys: Keys | None) -> None:
    """Before connect: present the client's keys and expect the server's."""
    if keys is not None:
        sock.curve_secretkey, sock.curve_publickey, sock.curve_serverkey = keys.secret, keys.public, keys.server_public


def as_server(sock: zmq.Socket, keys: Keys | None) -> None:
    """Before bind: accept only CURVE clients (the ZAP authenticator decides which)."""
    if keys is not None:
        sock.curve_secretkey, sock.curve_publickey, sock.curve_server = keys.secret, keys.public, True


class Authenticator:
    """pyzmq's ZAP handler thread for a context. It admits a client whose public key is in
    `<keys_dir>/clients/`, re-read every RELOAD_S (a key is added or revoked without a restart),
    and counts the connections it refused (`denied`, shown in status as invalid `unauthorized`)."""

    def __init__(self, context: zmq.Context, keys_dir: str):
        self.clients = Path(keys_dir) / CLIENTS
        if not self.clients.is_dir():
            raise CurveError(f"no client keys directory {self.clients}: run 'dfwatch keys generate {keys_dir}'")
        self.allowed = self._read()
        self.denied = 0
        self._throttle = Throttle(10.0)  # one line per 10 s, whatever the rate of attempts
        self.auth = ThreadAuthenticator(context)
        self.stop = threading.Event()
        self.reloader = threading.Thread(target=self._reload, name="curve-keys", daemon=True)

    def _read(self) -> set[bytes]:
        return set(zmq.auth.load_certificates(self.clients))  # z85 public keys of *.key files

    def callback(self, domain: str, client_key: bytes) -> bool:
        """Called by the authenticator thread for every CURVE handshake."""
        if client_key in self.allowed:
            return True
        self.denied += 1
        if self._throttle.ready():
            log.warning("connection refused: its CURVE key is not among the allowed clients", denied=self.denied)
        return False

    def start(self) -> "Authenticator":
        self.auth.start()
        self.auth.configure_curve_callback(domain="*", credentials_provider=self)
        log.info("CURVE on: only clients with a key in " + str(self.clients), allowed=len(self.allowed))
        self.reloader.start()
        return self

    def _reload(self) -> None:
        while not self.stop.wait(RELOAD_S):
            try:
                self.allowed = self._read()  # replaces the allowed set at once
            except OSError as e:
                log.error("cannot re-read the allowed CURVE keys; keeping the last set", error=str(e))

    def close(self) -> None:
        self.stop.set()
        self.auth.stop()
