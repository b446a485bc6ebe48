"""`dfwatch weights fetch` against a real HTTP server on loopback: resume, checksums, mirrors."""
from __future__ import annotations

import hashlib
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from helpers.daemon import DFWATCH

CONTENT = os.urandom(3 * (1 << 20) + 12345)  # a 3-MB "checkpoint"


class Mirror(BaseHTTPRequestHandler):
    """Serves CONTENT under any name, honours Range, and cuts the first full download halfway."""
    cut_first = True
    requests: list[str | None] = []

    def do_GET(self):
        Mirror.requests.append(self.headers.get("Range"))
        start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
        body = CONTENT[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(CONTENT) - 1}/{len(CONTENT)}")
        self.end_headers()
        if Mirror.cut_first and not start:
            Mirror.cut_first = False
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)  # the connection breaks mid-file
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def mirror():
    Mirror.cut_first, Mirror.requests = True, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Mirror)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/models"
    server.shutdown()
    server.server_close()


def fetch(*args):
    return subprocess.run(DFWATCH + ["weights", "fetch", *args], capture_output=True, text=True, timeout=60)


def test_a_cut_download_resumes_where_it_stopped(mirror, tmp_path):
    first = fetch("SLOW_8x8_R50", "--dir", str(tmp_path), "--from", mirror)
    assert first.returncode == 1 and "the connection broke after" in first.stderr and "again to resume" in first.stderr
    part = tmp_path / "SLOW_8x8_R50.pyth.part"
    assert 0 < part.stat().st_size < len(CONTENT)
    second = fetch("SLOW_8x8_R50", "--dir", str(tmp_path), "--from", mirror)
    assert second.returncode == 0, second.stderr
    assert Mirror.requests == [None, f"bytes={part_size(first)}-"]  # the second asked only for the rest
    assert (tmp_path / "SLOW_8x8_R50.pyth").read_bytes() == CONTENT and not part.exists()
    digest = hashlib.sha256(CONTENT).hexdigest()
    assert f"sha256 {digest}  UNPINNED" in second.stdout  # pytorchvideo publishes no checksum


def part_size(result) -> int:
    return int(result.stderr.split("the connection broke after ")[1].split()[0])


def test_a_file_that_does_not_match_its_checksum_is_refused_and_removed(mirror, tmp_path):
    Mirror.cut_first = False
    r = fetch("resnet50-11ad3fa6.pth", "--dir", str(tmp_path), "--from", mirror)
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "does not match the published 11ad3fa6...; the download was deleted" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_local_mirror_directory_and_unknown_names(tmp_path):
    source = tmp_path / "mirror"
    source.mkdir()
    (source / "SLOW_8x8_R50.pyth").write_bytes(b"weights")
    r = fetch("SLOW_8x8_R50.pyth", "--dir", str(tmp_path / "w"), "--from", str(source))
    assert r.returncode == 0 and (tmp_path / "w" / "SLOW_8x8_R50.pyth").read_bytes() == b"weights"
    r = fetch("nope", "--dir", str(tmp_path / "w"))
    assert r.returncode == 1 and "no weight file named 'nope'" in r.stderr and "resnet50-11ad3fa6.pth" in r.stderr


def test_icpr_weights_must_have_the_sha256_their_name_says(tmp_path):
    from engines.bundles.fetch import find_sources

    (source,) = find_sources(["icpr-b4-ffpp"])
    assert source["file"] == f"EfficientNetB4_FFPP_bestval-{source['sha256']}.pth" and len(source["sha256"]) == 64
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / source["file"]).write_bytes(CONTENT)  # bytes that are not the published ones
    r = fetch("icpr-b4-ffpp", "--dir", str(tmp_path / "w"), "--from", str(mirror))
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert f"does not match the published {source['sha256']}...; the download was deleted" in r.stderr
    assert list((tmp_path / "w").iterdir()) == []
    assert {s["name"] for s in find_sources(["icpr-b4att-dfdc", "icpr-b4-dfdc", "icpr-b4att-ffpp"])} == \
        {"icpr-b4att-dfdc", "icpr-b4-dfdc", "icpr-b4att-ffpp"}


def test_a_cut_copy_from_a_local_mirror_resumes(tmp_path):
    mirror, target = tmp_path / "mirror", tmp_path / "w"
    mirror.mkdir()
    target.mkdir()
    (mirror / "SLOW_8x8_R50.pyth").write_bytes(CONTENT)
    had = b"\0" * (len(CONTENT) // 3)  # what a cut copy left (zeros here, so that a fresh copy would show)
    (target / "SLOW_8x8_R50.pyth.part").write_bytes(had)
    r = fetch("SLOW_8x8_R50", "--dir", str(target), "--from", str(mirror))
    assert r.returncode == 0, r.stderr
    assert (target / "SLOW_8x8_R50.pyth").read_bytes() == had + CONTENT[len(had):]  # only the rest was copied
