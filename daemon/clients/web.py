"""`dfwatch web`: a read-only dashboard — streams, live score timelines, alerts with their evidence.

A subscriber like any other (it never slows the daemon): one SUB socket feeds a `Board`, the
in-memory picture of the last `HISTORY_S` seconds, and every open page gets the changes as
server-sent events (`/api/events`) after one snapshot (`/api/state`). The page is static files in
`daemon/clients/webui/` with the uPlot chart library vendored (MIT), so nothing is built or downloaded at
install time. Evidence files are served from the evidence directory only (`/evidence/<stream>/
<alert_id>/<file>`): a path that is absolute or climbs out with `..` is refused.

Bound to loopback it needs no login. Any other address needs `--allow-remote` and a token
(`--token-file`), checked on every request: `Authorization: Bearer <token>`, or `?token=` once in
the browser, which then keeps it in a cookie. The token file holds one token, or one a line with
the name of whoever holds it before it (`alice 3f9c...`): a review names its reviewer.
"""
from __future__ import annotations

import asyncio
import errno
import hmac
import ipaddress
import json
import mimetypes
import time
from collections import deque
from dataclasses import asdict
from pathlib import Path

import zmq
import zmq.asyncio
from aiohttp import web

from daemon.wire.curve import Keys, as_client
from daemon.wire.protocol import ALERT_TOPIC, STATUS_TOPIC, VERDICT_TOPIC, ProtocolError, Status, Verdict
from daemon.wire.subscriber import decode
from engines.errors import DfwatchError
from engines.logs import get_logger

log = get_logger()
UI = Path(__file__).with_name("webui")
HISTORY_S = 600          # seconds of verdicts kept per stream for the timelines
MAX_ALERTS = 200         # alerts kept (open ones are never dropped)
STALE_S = 5.0            # no status for this long: the daemon is not reachable
CLIENT_QUEUE = 1000      # events waiting for one slow page before it is dropped
TOKEN_COOKIE = "dfwatch_token"


class WebError(DfwatchError):
    exit_code = 2


# ---- what the page shows ---------------------------------------------------------------------

class Board:
    """The daemon's recent state, built from its messages; `snapshot()` for a new page."""

    def __init__(self, history_s: float = HISTORY_S, stored_alerts: list[dict] = ()):
        self.history_s = history_s
        self.status: dict | None = None
        self.status_at = 0.0              # time.monotonic() of the last status
        self.last: dict[str, dict] = {}   # stream -> last verdict
        self.history: dict[str, deque] = {}   # stream -> recent points, each with its face track
        self.thumbnails: dict[str, dict[str, str]] = {}   # stream -> track -> its face (a data: URL)
        # alert_id -> latest message, insertion-ordered; the evidence store's alerts first, so the
        # list survives the dashboard's own restarts
        self.alerts: dict[str, dict] = {a["alert_id"]: a for a in list(stored_alerts)[-MAX_ALERTS:]}
        self.unconfirmed = {k for k, a in self.alerts.items() if a["state"] != "end"}

    def on_message(self, msg) -> tuple[str, dict]:
        """Records a message; returns the (event, data) to send to the pages."""
        if isinstance(msg, Status):
            self.status, self.status_at = asdict(msg), time.monotonic()
            self._settle_stored(msg)
            return "status", self.status
        data = asdict(msg)
        if isinstance(msg, Verdict):
            self.last[msg.stream] = {k: v for k, v in data.items() if k != "thumbnail"}
            if msg.thumbnail and msg.track is not None:
                self.thumbnails.setdefault(msg.stream, {})[str(msg.track)] = msg.thumbnail
            points = self.history.setdefault(msg.stream, deque())
            points.append({"t": msg.t_last, "score": msg.score, "label": msg.label, "track": msg.track})
            old = len(points)
            while points and points[0]["t"] < msg.t_last - self.history_s:
                points.popleft()
            if len(points) < old:  # a track with no point left on the page needs no picture
                live = {str(p["track"]) for p in points}
                for track in [t for t in self.thumbnails.get(msg.stream, {}) if t not in live]:
                    del self.thumbnails[msg.stream][track]
            return "verdict", data
        previous = self.alerts.pop(msg.alert_id, None)
        if previous and previous.get("review"):  # a review outlives the alert's later messages
            data = {**data, "review": previous["review"]}
        self.alerts[msg.alert_id] = data
        ended = [k for k, a in self.alerts.items() if a["state"] == "end"]
        for key in ended[: max(0, len(self.alerts) - MAX_ALERTS)]:
            del self.alerts[key]
        return "alert", data

    def _settle_stored(self, status: Status) -> None:
        """A stored alert without an end that the running daemon does not hold open ended while
        nobody recorded it (the daemon was killed): shown as ended, time unknown."""
        open_now = {a for st in status.streams.values() for a in st.open_alerts}
        for alert_id in self.unconfirmed - open_now:
            if alert_id in self.alerts and self.alerts[alert_id]["state"] != "end":
                self.alerts[alert_id] = {**self.alerts[alert_id], "state": "end", "t_end": None, "interrupted": True}
        self.unconfirmed.clear()

    @property
    def reachable(self) -> bool:
        return self.status is not None and time.monotonic() - self.status_at < STALE_S

    def snapshot(self) -> dict:
        return {"reachable": self.reachable, "status": self.status, "last": self.last,
                "history": {k: list(v) for k, v in self.history.items()}, "thumbnails": self.thumbnails,
                "alerts": list(self.alerts.values())}


# ---- the server ------------------------------------------------------------------------------

class Dashboard:
    def __init__(self, endpoint: str, evidence: Path | None, token: str | dict[str, str] | None = None,
                 keys: Keys | None = None, reviews: bool = False):
        """`token`: one token, or token -> the name of whoever holds it (`read_tokens`);
        `reviews`: the page may mark alerts false alarm / confirmed (only with a token, and an
        evidence directory to store them in); otherwise it only reads."""
        from daemon.outcomes.evidence import stored_alerts

        self.endpoint, self.evidence, self.keys = endpoint, evidence, keys
        self.tokens = {token: "operator"} if isinstance(token, str) else dict(token or {})
        self.reviews = bool(reviews and self.tokens and evidence)
        self.board = Board(stored_alerts=stored_alerts(evidence, MAX_ALERTS) if evidence else ())
        self.pages: set[asyncio.Queue] = set()
        self.dropped_pages = 0

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/", self._index)
        app.router.add_get("/api/state", self._state)
        app.router.add_get("/api/events", self._events)
        app.router.add_get("/evidence/{path:.*}", self._evidence)
        app.router.add_post("/api/reviews", self._review)
        app.router.add_static("/ui/", UI)
        return app

    # -- access ---------------------------------------------------------------------------------
    @web.middleware
    async def _auth(self, request: web.Request, handler):
        if not self.tokens:
            return await handler(request)
        given = (request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
                 or request.query.get("token") or request.cookies.get(TOKEN_COOKIE, ""))
        holder = None
        for token, name in self.tokens.items():  # every one compared: the time says nothing of which
            if hmac.compare_digest(given.encode(), token.encode()):
                holder = name
        if holder is None:
            raise web.HTTPUnauthorized(text="dfwatch web: a token is required (?token=... or Authorization: Bearer)")
        request["reviewer"] = holder
        response = await handler(request)
        if request.query.get("token") and isinstance(response, web.StreamResponse) and not response.prepared:
            response.set_cookie(TOKEN_COOKIE, given, httponly=True, samesite="Strict")
        return response

    # -- pages and data -------------------------------------------------------------------------
    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(UI / "index.html", headers={"Cache-Control": "no-store"})

    async def _state(self, request: web.Request) -> web.Response:
        return web.json_response({**self.board.snapshot(), "reviews": self.reviews})

    async def _review(self, request: web.Request) -> web.Response:
        """A person's review of an alert, stored beside its evidence (daemon/outcomes/reviews.py)
        and shown to every open page."""
        from daemon.outcomes.reviews import ReviewError, write_review

        if not self.reviews:
            raise web.HTTPForbidden(text="dfwatch web: read-only (reviews need --token-file and --allow-reviews)")
        try:
            body = await request.json()
            review = write_review(self.evidence, body.get("stream"), body.get("alert_id"), body.get("review"),
                                  body.get("note", ""), request.get("reviewer", "operator"))
        except (ValueError, AttributeError, ReviewError) as e:
            raise web.HTTPBadRequest(text=f"dfwatch web: {e}")
        alert = self.board.alerts.get(review["alert_id"])
        if alert is not None:
            self.board.alerts[review["alert_id"]] = {**alert, "review": review["review"]}
            self._broadcast("alert", self.board.alerts[review["alert_id"]])
        log.info("alert reviewed", stream=review["stream"], alert_id=review["alert_id"], review=review["review"],
                 reviewer=review["reviewer"], reviews=len(review["history"]))
        return web.json_response(review)

    async def _events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: every verdict, alert and status, and reachability changes."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        queue: asyncio.Queue = asyncio.Queue(CLIENT_QUEUE)
        self.pages.add(queue)
        try:
            while True:
                event, data = await queue.get()
                await response.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.pages.discard(queue)
        return response

    async def _evidence(self, request: web.Request) -> web.StreamResponse:
        if self.evidence is None:
            raise web.HTTPNotFound(text="no evidence directory (pass --evidence DIR)")
        relative = request.match_info["path"]
        if any(ord(c) < 32 for c in relative):  # a NUL byte (%00) or control character: no file has one
            raise web.HTTPBadRequest(text="a file name with a control character")
        parts = Path(relative).parts
        if not relative or Path(relative).is_absolute() or ".." in parts or "\\" in relative:
            raise web.HTTPForbidden(text="only files under the evidence directory")
        root = self.evidence.resolve()
        path = (root / relative).resolve()
        if not path.is_relative_to(root):  # a link out of the directory
            raise web.HTTPForbidden(text="only files under the evidence directory")
        if not path.is_file():
            raise web.HTTPNotFound()
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return web.FileResponse(path, headers={"Content-Type": kind})

    # -- the subscriber -------------------------------------------------------------------------
    def _broadcast(self, event: str, data: dict) -> None:
        for queue in list(self.pages):
            try:
                queue.put_nowait((event, data))
            except asyncio.QueueFull:  # a page that stopped reading: drop it, it reconnects
                self.pages.discard(queue)
                self.dropped_pages += 1

    async def _follow(self) -> None:
        ctx = zmq.asyncio.Context.instance()
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        as_client(sub, self.keys)
        for topic in (VERDICT_TOPIC, ALERT_TOPIC, STATUS_TOPIC):
            sub.setsockopt(zmq.SUBSCRIBE, topic)
        sub.connect(self.endpoint)
        log.info("dashboard following", endpoint=self.endpoint)
        try:
            while True:
                parts = await sub.recv_multipart()
                try:
                    msg = decode(parts)
                except ProtocolError:
                    continue
                self._broadcast(*self.board.on_message(msg))
        finally:
            sub.close()

    async def _watch_reachability(self) -> None:
        known = None
        while True:
            await asyncio.sleep(1.0)
            if self.board.reachable != known:
                known = self.board.reachable
                self._broadcast("daemon", {"reachable": known})

    def start_tasks(self) -> list[asyncio.Task]:
        return [asyncio.create_task(self._follow()), asyncio.create_task(self._watch_reachability())]


def parse_bind(bind: str) -> tuple[str, int]:
    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit():
        raise WebError(f"--bind {bind!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_tokens(path: str | None) -> dict[str, str] | None:
    """token -> holder's name, from a file no other user can read: one token (its holder is
    "operator"), or one a line as `NAME TOKEN`; each token at least 16 characters."""
    from engines.secrets import SecretError, check_secret_file

    if path is None:
        return None
    try:
        text = check_secret_file(path, "dashboard token", min_length=16)
    except SecretError as e:
        raise WebError(str(e)) from None
    tokens = {}
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if len(words) > 2 or len(words[-1]) < 16:
            raise WebError(f"dashboard token file {path}, line {number}: expected TOKEN or NAME TOKEN, each token "
                           "at least 16 characters (e.g. 'alice ' + the output of 'openssl rand -hex 24')")
        tokens[words[-1]] = words[0] if len(words) == 2 else "operator"
    return tokens


def serve(dashboard: Dashboard, host: str, port: int) -> int:
    """Binds first (a port in use is one line, before any 'serving' line), then serves until SIGTERM."""
    return asyncio.run(_serve(dashboard, host, port))


async def _serve(dashboard: Dashboard, host: str, port: int) -> int:
    import signal

    runner = web.AppRunner(dashboard.app(), access_log=None, handle_signals=False,
                           shutdown_timeout=2.0)  # open event streams never finish on their own
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as e:
        await runner.cleanup()
        reason = "the address is in use" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
        raise WebError(f"cannot serve the dashboard on {host}:{port}: {reason}; another program (a second "
                       "dfwatch web?) may use it: stop it or pick another with --bind / web.bind") from None
    log.info("dashboard serving", url=f"http://{host}:{port}/", evidence=str(dashboard.evidence))
    tasks = dashboard.start_tasks()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await runner.cleanup()
    return 0
