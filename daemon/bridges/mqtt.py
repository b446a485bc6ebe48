"""The MQTT bridge (paho-mqtt): alerts, retained per-stream states and Home Assistant discovery.

Topics (`prefix` dfwatch by default):
  <prefix>/availability         retained: online / offline (the bridge; offline is also its last will)
  <prefix>/daemon               retained: online while the daemon publishes status, offline once it
                                has been silent for `offline_after_s` or said it is stopping
  <prefix>/<stream>/alert_state retained: ON while the stream has an open alert (any face track), else OFF
  <prefix>/<stream>/alert       retained: the latest alert message (JSON: start / update / end, with `track`)
  <prefix>/<stream>/attributes  retained: that message as Home Assistant attributes (`state` is a
                                reserved name there: `event`; times also as ISO 8601; evidence URLs)
  <prefix>/<stream>/state       retained: fake while any face track's latest window is fake, else real
                                (or no_face when no track has a face)
  <prefix>/<stream>/verdict     every verdict (JSON), with `verdicts`
With `discovery`, `<discovery_prefix>/binary_sensor/dfwatch_<host>/<stream>/config` (retained)
makes each stream a Home Assistant device with a `Deepfake` problem sensor on alert_state,
available only while both the bridge and the daemon are online. Every (re)connect publishes every
retained topic again: a broker restarted without persistence forgets them. `mqtts://` brokers use TLS (the
system's CA certificates, or `ca_file`; a client certificate with `cert_file` and `key_file`).
"""
from __future__ import annotations

import json
import os
import re
import socket
import time
from dataclasses import asdict
from datetime import datetime, timezone
from urllib.parse import quote

from daemon.bridges import Bridge, BridgeError, log, read_secret
from daemon.wire.protocol import Alert, Status, Verdict
from daemon.wire.tracks import LatestByTrack
from engines import __version__
from engines.config import parse_broker


class MqttBridge(Bridge):
    kind = "mqtt"

    def __init__(self, broker: str, prefix: str = "dfwatch", username: str | None = None,
                 password: str | None = None, verdicts: bool = False, name: str = "mqtt",
                 ca_file: str | None = None, cert_file: str | None = None, key_file: str | None = None,
                 discovery: bool = True, discovery_prefix: str = "homeassistant", max_queued: int = 1000,
                 offline_after_s: float = 10.0, evidence_url: str | None = None):
        import paho.mqtt.client as mqtt

        super().__init__(name)
        try:
            tls, self.host, self.port = parse_broker(broker)
        except ValueError as e:
            raise BridgeError(str(e)) from None
        self.prefix, self.verdicts = prefix.rstrip("/"), verdicts
        self.offline_after_s, self.evidence_url = offline_after_s, evidence_url
        self.discovery, self.discovery_prefix = discovery, discovery_prefix.rstrip("/")
        self.node = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())
        self.alerts: dict[str, frozenset[str]] = {}  # stream -> its open alerts' ids, as published
        self.tracks = LatestByTrack()             # each stream's live face tracks: `state` is fake while any is
        self.last_alert: dict[str, Alert] = {}    # stream -> its latest alert message, retained
        self.model: str | None = None
        self.daemon: str | None = None            # online / offline, as published
        self.last_status = 0.0
        self.accepted = 0                         # publishes paho took (delivered counts the broker's acks)
        self._connected, self._told_unreachable = False, False
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"dfwatch-{socket.gethostname()}-{os.getpid()}")
        if tls:
            self.client.tls_set(ca_certs=ca_file, certfile=cert_file, keyfile=key_file)
        if username:
            self.client.username_pw_set(username, password)
        self.client.will_set(self.topic("availability"), "offline", qos=1, retain=True)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.max_queued_messages_set(max_queued)  # while the broker is away; past it: dropped
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish

    @classmethod
    def from_config(cls, c, name: str) -> "MqttBridge":
        return cls(c.broker, c.prefix, c.username, read_secret(c.password_file, "MQTT password"), c.verdicts, name,
                   c.ca_file, c.cert_file, c.key_file, c.discovery, c.discovery_prefix,
                   offline_after_s=c.offline_after_s, evidence_url=c.evidence_url)

    def topic(self, *parts: str) -> str:
        return "/".join((self.prefix, *parts))

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def queued(self) -> int:
        return max(0, self.accepted - self.delivered)

    # -- connection (paho's network thread) -----------------------------------------------------
    def start(self) -> None:
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()  # its thread connects, and reconnects with backoff after any loss

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            log.error("MQTT broker refused the connection", broker=f"{self.host}:{self.port}", reason=str(reason))
            return
        self._connected, self._told_unreachable = True, False
        # every retained topic, on every connect: a broker restarted without persistence forgot them
        self._publish(self.topic("availability"), "online", retain=True)
        if self.daemon is not None:
            self._publish(self.topic("daemon"), self.daemon, retain=True)
        for stream in list(self.alerts):
            self._announce(stream)
        log.info("MQTT broker connected", broker=f"{self.host}:{self.port}", prefix=self.prefix)

    def _on_connect_fail(self, client, userdata) -> None:
        if not self._told_unreachable:  # one line, not one per retry
            self._told_unreachable = True
            log.warning("MQTT broker unreachable; retrying in the background (every 1-30 s)",
                        broker=f"{self.host}:{self.port}")

    def _on_disconnect(self, client, userdata, flags, reason, properties) -> None:
        self._connected = False
        if reason.is_failure:
            log.warning("MQTT broker connection lost; reconnecting", broker=f"{self.host}:{self.port}",
                        reason=str(reason))

    def _on_publish(self, client, userdata, mid, reason, properties) -> None:
        self.delivered += 1

    # -- messages from the daemon -------------------------------------------------------------
    def handle(self, msg) -> None:
        if isinstance(msg, Status):
            self.last_status, self.model = time.monotonic(), msg.model
            self._daemon("offline" if msg.stopping else "online", "the daemon is stopping")
            for stream, st in msg.streams.items():
                self._know(stream)
                self._alert_state(stream, frozenset(st.open_alerts))
        elif isinstance(msg, Alert):
            self._know(msg.stream)
            self.last_alert[msg.stream] = msg
            self._publish_alert(msg)
            ids = self.alerts.get(msg.stream, frozenset())
            self._alert_state(msg.stream, ids - {msg.alert_id} if msg.state == "end" else ids | {msg.alert_id})
        elif isinstance(msg, Verdict):
            self._know(msg.stream)
            self.tracks.update(msg)
            self._publish(self.topic(msg.stream, "state"), self.tracks.label(msg.stream), retain=True)
            if self.verdicts:
                self._publish(self.topic(msg.stream, "verdict"), json.dumps(asdict(msg)), retain=False)

    def tick(self) -> None:
        if self.daemon == "online" and time.monotonic() - self.last_status > self.offline_after_s:
            self._daemon("offline", f"the daemon published no status for {self.offline_after_s:g} s")

    def _daemon(self, state: str, why: str = "") -> None:
        if state != self.daemon:
            self.daemon = state
            self._publish(self.topic("daemon"), state, retain=True)
            if state == "offline":
                log.warning(f"{why}; told the broker it is offline")

    def _publish_alert(self, alert: Alert) -> None:
        self._publish(self.topic(alert.stream, "alert"), json.dumps(asdict(alert)), retain=True)
        self._publish(self.topic(alert.stream, "attributes"), json.dumps(self.attributes(alert)), retain=True)

    def attributes(self, alert: Alert) -> dict:
        """The alert as Home Assistant entity attributes: `state` is reserved there (the entity's
        own), so the message's is `event`; times also as ISO 8601 (UTC); with `evidence_url`, the
        evidence files as links on the dashboard."""
        data = asdict(alert)
        data["event"] = data.pop("state")
        for key in ("t_start", "t_last", "t_end"):
            if data.get(key) is not None:
                data[key + "_iso"] = datetime.fromtimestamp(data[key], timezone.utc).isoformat(timespec="seconds")
        if self.evidence_url and alert.evidence:
            data["evidence_urls"] = [f"{self.evidence_url}/evidence/{quote(p)}" for p in alert.evidence]
        return data

    def _know(self, stream: str) -> None:
        if stream not in self.alerts:
            self.alerts[stream] = frozenset()
            self._announce(stream)

    def _alert_state(self, stream: str, ids: frozenset[str]) -> None:
        was_on = bool(self.alerts.get(stream))
        self.alerts[stream] = ids
        if was_on != bool(ids):
            self._publish(self.topic(stream, "alert_state"), "ON" if ids else "OFF", retain=True)

    def _announce(self, stream: str) -> None:
        """Home Assistant discovery for a stream, and its alert state (the entity's first value)."""
        self._publish(self.topic(stream, "alert_state"), "ON" if self.alerts.get(stream) else "OFF", retain=True)
        if stream in self.last_alert:
            self._publish_alert(self.last_alert[stream])
        if self.tracks.of(stream):
            self._publish(self.topic(stream, "state"), self.tracks.label(stream), retain=True)
        if self.discovery:
            self._publish(self.discovery_topic(stream), json.dumps(self.discovery_config(stream)), retain=True)

    def discovery_topic(self, stream: str) -> str:
        return f"{self.discovery_prefix}/binary_sensor/dfwatch_{self.node}/{_object_id(stream)}/config"

    def discovery_config(self, stream: str) -> dict:
        uid = f"dfwatch_{self.node}_{_object_id(stream)}"
        return {
            "name": "Deepfake", "unique_id": f"{uid}_deepfake", "object_id": f"{uid}_deepfake",
            "device_class": "problem", "state_topic": self.topic(stream, "alert_state"),
            "payload_on": "ON", "payload_off": "OFF", "json_attributes_topic": self.topic(stream, "attributes"),
            "availability": [{"topic": self.topic("availability")}, {"topic": self.topic("daemon")}],
            "availability_mode": "all", "payload_available": "online", "payload_not_available": "offline",
            "device": {"identifiers": [uid], "name": f"dfwatch {stream}", "manufacturer": "dfwatch",
                       "model": self.model or "deepfake monitor", "sw_version": __version__},
            "origin": {"name": "dfwatch", "sw_version": __version__},
        }

    def _publish(self, topic: str, payload: str, retain: bool) -> None:
        import paho.mqtt.client as mqtt

        info = self.client.publish(topic, payload, qos=1, retain=retain)
        if info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):  # NO_CONN: queued until it reconnects
            self.accepted += 1
        else:
            self.count_drop(f"the client's queue is full or closed ({mqtt.error_string(info.rc)})")

    def close(self) -> None:
        info = self.client.publish(self.topic("availability"), "offline", qos=1, retain=True)
        try:
            info.wait_for_publish(timeout=1)
        except RuntimeError:  # not connected: the last will says offline instead
            pass
        if self.queued:
            self.count_drop("stopped with messages the broker had not acknowledged", self.queued)
        self.client.disconnect()
        self.client.loop_stop()


def _object_id(stream: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", stream)
