"""Every face its own verdict, with real parts: a 2x2 video-call gallery made from the real test
footage (one tile face-swapped as scripts/make_test_dataset.py swaps), a DLDFD detector trained
on the synthetic set by `dfwatch train`, then `dfwatch scan`, `dfwatch run` (with its MQTT
bridge on Debian's mosquitto and its dashboard in Chromium) and a `screen:` source reading the
gallery played by Chromium on a virtual screen (Xvfb)."""
from __future__ import annotations

import json
import subprocess
import time

import numpy as np
import pytest

from helpers.browser import ARTIFACTS, NEEDS_CHROMIUM, chromium, virtual_screen, wait as wait_page
from helpers.daemon import DFWATCH, Subscriber, daemon_env, free_port, start, stop
from helpers.mqtt import Broker, Listener, wait

STRIDE = 2
# the gallery's faces are 50-70 px in a 640x480 frame: detected at full width (320 halves them)
SETTINGS = ["--set", f"window.stride={STRIDE}", "--set", "faces.detect_width=640", "--set",
            "inference.max_frame_age_s=0"]


def dfwatch(*args, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(DFWATCH + list(args), capture_output=True, text=True, timeout=timeout, env=env)


def tile_of(box) -> int:
    """The gallery tile (0-3: left to right, top to bottom) a face box (fractions) lies in."""
    x, y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return int(y >= 0.5) * 2 + int(x >= 0.5)


def tiles_of_tracks(boxes_by_track: dict) -> dict[int, int]:
    return {track: tile_of(box) for track, box in boxes_by_track.items() if box}


# ---- scan ---------------------------------------------------------------------------------------

def test_scan_calls_the_gallery_fake_and_names_the_swapped_persons_track(gallery, detector, tmp_path):
    r = dfwatch("scan", str(gallery / "gallery.mp4"), "--bundle", str(detector), "--report", str(tmp_path / "report"),
                *SETTINGS, env=daemon_env(tmp_path))
    assert r.returncode == 1, r.stderr  # fake
    data = json.loads((tmp_path / "report" / "gallery.mp4.json").read_text())  # the report's JSON twin
    summary, windows = data["summary"], data["windows"]
    assert summary["verdict"] == "fake" and not summary["untrained"]
    tiles = tiles_of_tracks({t["track"]: t["box"] for t in summary["tracks"]})
    assert sorted(tiles.values()) == [0, 1, 2, 3], summary["tracks"]  # a track for every tile's person
    assert [tiles[t] for t in summary["fake_tracks"]] == [3]           # and only the swapped one is fake
    for t in summary["tracks"]:
        assert t["verdict"] == ("fake" if tiles[t["track"]] == 3 else "real"), t
    assert all(w["track"] in tiles for w in windows)  # no window mixes people or lacks its track
    fake = summary["fake_tracks"][0]
    assert f"track {fake}: FAKE, face at the bottom right" in r.stdout, r.stdout
    page = (tmp_path / "report" / "gallery.mp4.html").read_text()
    assert page.count('class="score" data-track=') >= 4 and "<table id=\"tracks\">" in page  # a line per person


def test_with_select_largest_the_scores_are_the_one_face_pipelines(gallery, detector, tmp_path):
    """`faces.select: largest` is the pipeline before tracks: one face followed per stream. Its
    window scores equal the one-face reference computed here over the whole file at once
    (tests/helpers/crops.py: follow, smooth and crop every frame; majority vote per window)."""
    from daemon.service.capture import file_frames
    from engines.backends import open_runners
    from engines.bundles.bundle import load_bundle
    from engines.pipeline.decision import frame_vote
    from engines.pipeline.preprocess import DetectorSettings, FaceDetector, normalize
    from helpers.crops import crop_sequence

    r = dfwatch("scan", str(gallery / "gallery.mp4"), "--bundle", str(detector), "--json", "--set",
                "faces.select=largest", *SETTINGS, env=daemon_env(tmp_path))
    windows = [json.loads(line) for line in r.stdout.splitlines()][:-1]
    assert windows and {w["track"] for w in windows} == {0}

    bundle = load_bundle(detector)
    frames = [f for f, *_ in file_frames(str(gallery / "gallery.mp4"), bundle.fps, 640, 480)]
    finder = FaceDetector(DetectorSettings(detect_width=640))
    detections = [finder.detect([f])[0] for f in frames]
    crops, found = crop_sequence(frames, detections, bundle.crop)
    runners, _ = open_runners(bundle, "auto", "cpu")
    p = np.concatenate([runners["frame"].run(normalize(crops[i:i + 1], bundle.frame_norm)) for i in range(len(crops))])
    t, n = bundle.frames, len(frames)
    starts = list(range(0, n - t + 1, STRIDE))
    starts += [n - t] if starts[-1] + t < n else []  # the final window: the last T frames
    expected = [frame_vote(p[w:w + t][found[w:w + t]], bundle.threshold).score for w in starts]
    assert len(windows) == len(expected)
    assert max(abs(w["score"] - e) for w, e in zip(windows, expected)) < 1e-5


# ---- the daemon ---------------------------------------------------------------------------------

@NEEDS_CHROMIUM
def test_run_alerts_only_on_the_swapped_persons_track_over_mqtt_and_the_dashboard(gallery, detector, tmp_path):
    """`dfwatch run` on the gallery (looped), its MQTT bridge and its dashboard: verdicts for every
    tile's track, an alert for the swapped tile's track alone, carried with its track to MQTT, and
    one timeline line per track, each with its face, in the page."""
    broker, port = Broker(tmp_path), free_port()
    listener = Listener(broker.port)
    config = tmp_path / "dfwatch.yaml"
    config.write_text(f"bridges:\n  - kind: mqtt\n    broker: mqtt://127.0.0.1:{broker.port}\n    discovery: false\n"
                      f"streams:\n  - {{name: g, source: {gallery / 'gallery.mp4'}, loop: true}}\n"
                      f"web:\n  enabled: true\n  bind: 127.0.0.1:{port}\n")
    runtime = tmp_path / "run"
    runtime.mkdir()
    log = tmp_path / "daemon.log"
    proc = start(["run", "--config", str(config), "--bundle", str(detector), *SETTINGS], daemon_env(runtime), log)
    sub = Subscriber(f"ipc://{runtime}/verdicts")
    try:
        def enough(s):  # every tile's person has verdicts, and the swapped one's alert started
            tiles = tiles_of_tracks({v.track: v.box for v in s.of("g") if v.track is not None})
            per_tile = {k: sum(tiles.get(v.track) == k for v in s.of("g")) for k in range(4)}
            return min(per_tile.values()) >= 4 and any(a.state == "start" for a in s.alerts)
        sub.wait_for(enough, 150, "verdicts for every tile and the swapped tile's alert", log)
        # the status says so too: the event awaited, not read at once (a status comes once a second,
        # and the looped gallery ends and restarts its tracks, and so their alerts, every 4 s)
        sub.wait_for(lambda s: s.stream("g").tracks == 4 and len(s.stream("g").open_alerts) == 1, 60,
                     "a status with the four tracks and the one open alert", log)
        tiles = tiles_of_tracks({v.track: v.box for v in sub.of("g") if v.track is not None})
        alerted = {a.track for a in sub.alerts}
        assert alerted and {tiles[t] for t in alerted} == {3}, (alerted, tiles)
        fake = {v.track for v in sub.of("g") if v.label == "fake"}
        assert {tiles[t] for t in fake} == {3}, [(v.track, v.label, v.score) for v in sub.of("g")]

        alert = wait(lambda: listener.last("dfwatch/g/alert"), 30, "the alert at the broker")
        assert json.loads(alert)["track"] in alerted
        wait(lambda: listener.last("dfwatch/g/alert_state") == b"ON", 30, "alert_state ON")
        assert wait(lambda: listener.last("dfwatch/g/state") == b"fake", 30, "state fake while a track is")

        with chromium("--window-size=1100,1000") as page:
            page.get(f"http://127.0.0.1:{port}/")
            lines = wait_page(page, "const c = window.dfwatch.charts.g; return c && c.tracks.length >= 4 && "
                                    "c.tracks.length", 60, "a timeline line per track")
            assert lines == len(tiles)
            faces = wait_page(page, "const i = [...document.querySelectorAll('.timeline .track img')]; "
                                    "return i.length >= 4 && i.every((x) => x.complete && x.naturalWidth > 0) "
                                    "&& i.length", 30, "each track's face")
            assert faces == lines
            label = wait_page(page, "const b = document.querySelector('#alerts li.open b'); return b && b.innerText",
                              30, "an open alert in the list")
            sub.pump(0.5)
            tiles = tiles_of_tracks({v.track: v.box for v in sub.of("g") if v.track is not None})
            assert label in {f"g track {a.track}" for a in sub.alerts if tiles.get(a.track) == 3}, label
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.save_screenshot(str(ARTIFACTS / "dashboard-tracks.png"))
    finally:
        sub.close()
        assert stop(proc, timeout=20) == 0
        listener.close()
        broker.stop()
    ended = [a for a in sub.alerts if a.state == "end"]
    assert not ended or {a.track for a in ended} <= alerted


@NEEDS_CHROMIUM
def test_a_screen_source_reads_the_call_window_and_gives_per_track_verdicts(gallery, detector, tmp_path):
    """The gallery played by Chromium in full screen on a 640x480 virtual screen, as a call client
    shows a gallery view; `dfwatch run` reads that screen (`screen:`) and gives every person a track."""
    import cv2

    from daemon.outcomes.evidence import write_video

    cap = cv2.VideoCapture(str(gallery / "gallery.mp4"))
    frames = []
    while (ok := cap.read())[0]:
        frames.append(ok[1])
    write_video(tmp_path / "gallery.webm", frames, 24.0)  # VP8: Chromium plays it
    page = tmp_path / "call.html"
    page.write_text("<!doctype html><body style='margin:0;background:#000;overflow:hidden'>"
                    "<video src='gallery.webm' autoplay muted loop playsinline "
                    "style='position:fixed;left:0;top:0;width:640px;height:480px;object-fit:fill'></video></body>")
    runtime = tmp_path / "run"
    runtime.mkdir()
    log = tmp_path / "daemon.log"
    with virtual_screen(640, 480) as display, \
            chromium("--kiosk", "--window-position=0,0", "--window-size=640,480", headless=False,
                     display=display) as browser:
        browser.get(page.as_uri())
        wait_page(browser, "const v = document.querySelector('video'); return v && v.currentTime > 0.2", 30,
                  "the gallery to play")
        proc = start(["run", "--bundle", str(detector), "--stream", "call=screen:", *SETTINGS],
                     daemon_env(runtime, DISPLAY=display), log)
        sub = Subscriber(f"ipc://{runtime}/verdicts")
        try:
            def every_tile(s):
                tiles = tiles_of_tracks({v.track: v.box for v in s.of("call") if v.track is not None})
                return sorted(set(tiles.values())) == [0, 1, 2, 3] and len(s.of("call")) >= 12
            sub.wait_for(every_tile, 120, "verdicts for the four people on the screen", log)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            browser.save_screenshot(str(ARTIFACTS / "screen-source-call.png"))
        finally:
            sub.close()
            assert stop(proc, timeout=20) == 0
    tiles = tiles_of_tracks({v.track: v.box for v in sub.of("call") if v.track is not None})
    fake = {tiles.get(v.track) for v in sub.of("call") if v.label == "fake"}
    assert fake <= {3}, [(v.track, tiles.get(v.track), v.label, v.score) for v in sub.of("call")]
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert any(line["event"] == "opened" and line.get("kind") == "screen" for line in lines)


# ---- old readers --------------------------------------------------------------------------------

NODE_READER = """
const zmq = require("zeromq");
const { decode } = require("@msgpack/msgpack");
(async () => {
  const sub = new zmq.Subscriber();
  sub.connect(process.argv[2]);
  sub.subscribe("verdict.");
  sub.subscribe("alert.");
  for await (const [topic, body] of sub) {
    console.log(JSON.stringify({ topic: topic.toString(), message: decode(body) }));
    if (topic.toString().startsWith("alert.")) break;
  }
  sub.close();
})();
"""


def test_the_documented_nodejs_reader_reads_per_track_messages(tmp_path):
    """docs/SECURITY.md's Node.js client (zeromq 6 and @msgpack/msgpack from the npm registry, as
    a user installs them), written before tracks: it reads verdicts and alerts that carry them."""
    import shutil

    import zmq

    from daemon.outcomes.alerts import AlertRules, AlertTracker
    from daemon.wire.protocol import Verdict

    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed (scripts/setup.sh needs npm too: the footage comes from it)")
    r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(tmp_path), "zeromq@6",
                        "@msgpack/msgpack@3"], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    (tmp_path / "reader.js").write_text(NODE_READER)
    endpoint = f"ipc://{tmp_path}/verdicts"
    pub = zmq.Context.instance().socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(endpoint)
    reader = subprocess.Popen(["node", str(tmp_path / "reader.js"), endpoint], stdout=subprocess.PIPE, text=True,
                              cwd=tmp_path)
    verdict = Verdict("call", 0, 0, 31, 10.0, 14.0, 0.93, "fake", 0.5, 32, 32, "m", "onnxruntime", 40.0, track=4,
                      box=[0.6, 0.6, 0.8, 0.9], thumbnail="data:image/jpeg;base64,AAAA")
    alert = AlertTracker("call", AlertRules(open_after=1, open_of=1), track=4).on_verdict(verdict)
    try:
        deadline = time.monotonic() + 30
        while reader.poll() is None and time.monotonic() < deadline:  # a subscriber misses what came before it
            pub.send_multipart(verdict.encode())
            pub.send_multipart(alert.encode())
            time.sleep(0.2)
        out, _ = reader.communicate(timeout=10)
    finally:
        pub.close()
        if reader.poll() is None:
            reader.kill()
    lines = [json.loads(line) for line in out.splitlines()]
    verdicts = [m["message"] for m in lines if m["topic"] == "verdict.call"]
    alerts = [m["message"] for m in lines if m["topic"] == "alert.call"]
    assert verdicts and verdicts[0]["track"] == 4 and verdicts[0]["box"] == [0.6, 0.6, 0.8, 0.9]
    assert verdicts[0]["score"] == pytest.approx(0.93) and verdicts[0]["v"] == 1
    assert alerts and alerts[0]["track"] == 4 and alerts[0]["state"] == "start"
