"""MQTT with real parts: Debian's mosquitto on a free loopback port, and a paho-mqtt listener."""
from __future__ import annotations

import shutil
import socket
import subprocess

import pytest

from helpers.daemon import free_port
from helpers.waiting import wait




# ---- MQTT ---------------------------------------------------------------------------------------

class Broker:
    def __init__(self, tmp_path):
        if shutil.which("mosquitto") is None and not shutil.os.path.exists("/usr/sbin/mosquitto"):
            pytest.fail("mosquitto is not installed: run scripts/setup.sh as root (Debian package mosquitto)")
        self.exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.port, self.log = free_port(), tmp_path / "mosquitto.log"
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen([self.exe, "-p", str(self.port)], stdout=open(self.log, "ab"),
                                     stderr=subprocess.STDOUT)
        wait(self._listening, 10, "mosquitto to listen")

    def _listening(self) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


class Listener:
    """A paho-mqtt subscriber of dfwatch/#, re-subscribing after each reconnect."""

    def __init__(self, port: int):
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool]] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, *a: c.subscribe([("dfwatch/#", 1), ("homeassistant/#", 1)])
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload, m.retain))
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect_async("127.0.0.1", port)
        self.client.loop_start()

    def last(self, topic: str) -> bytes | None:
        return next((p for t, p, _ in reversed(self.messages) if t == topic), None)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()
