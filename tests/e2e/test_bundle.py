"""Bundles: assembly from official checkpoints, validation, and refusal of tampered bundles."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import torch

from conftest import DFWATCH
from helpers.bundles import rewrite_manifest
from engines.bundles.bundle import load_bundle
from engines.errors import BundleError
from engines.families.schema import FORMAT_VERSION
from engines.families.writing import manifest_digest
from engines.families.stylegru import assemble
from engines.models.checkpoints import load_psp_encoder, save_head
from engines.models.stylegru import StyleGRUConfig, StyleGRUHead


@pytest.fixture
def bundle_copy(bundle_dir, tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(bundle_dir, dst, ignore=shutil.ignore_patterns("onnx"))
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest.pop("onnx")
    rewrite_manifest(dst, manifest)
    return dst


def test_assembled_bundle_describes_everything_the_daemon_needs(bundle_dir):
    b = load_bundle(bundle_dir)
    m = b.manifest.as_json()
    assert m["family"] == "stylegru" and not b.trained and b.id.startswith("stylegru-untrained-")
    assert (b.frames, b.clip_frames, b.manifest.style.levels, b.threshold) == (32, 16, (9,), 0.5)
    assert m["style"]["normalization"] == {"size": 256, "mean": [0.5] * 3, "std": [0.5] * 3}
    assert m["content"]["normalization"]["mean"] == [0.45] * 3 and m["content"]["normalization"]["std"] == [0.225] * 3
    assert m["crop"]["method"] == "box" and m["crop"]["margin"] == 0.2 and m["window"]["fps"] > 0
    for part in ("style", "content", "head"):
        assert len(m["files"][part]["sha256"]) == 64 and (bundle_dir / m["files"][part]["path"]).is_file()


def test_bundle_style_encoder_is_the_official_level9_encoder(bundle_dir, official_checkpoints):
    x = torch.rand(1, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(load_bundle(bundle_dir).module("style")(x),
                                   load_psp_encoder(official_checkpoints("psp", 0))(x), rtol=0, atol=0)


def test_modified_weight_file_is_refused(bundle_copy):
    with open(bundle_copy / "head.pt", "r+b") as f:
        f.seek(-100, 2)
        f.write(b"\x00" * 10)
    with pytest.raises(BundleError) as e:
        load_bundle(bundle_copy)
    assert str(e.value).startswith(f"{bundle_copy / 'head.pt'}: modified since the bundle was made")


@pytest.mark.parametrize("edit", [{"trained": True}, {"threshold": 0.9}, {"id": "other"}, "checksum"])
def test_an_edited_manifest_is_refused_as_itself(bundle_copy, edit):
    path = bundle_copy / "manifest.json"
    manifest = json.loads(path.read_text())
    if edit == "checksum":  # a weight file's checksum changed in the manifest: the manifest is to blame
        manifest["files"]["head"]["sha256"] = "0" * 64
    else:
        manifest.update(edit)
    path.write_text(json.dumps(manifest, indent=2))
    with pytest.raises(BundleError) as e:
        load_bundle(bundle_copy)
    assert str(e.value).startswith(f"{path}: edited since the bundle was made"), e.value


def test_a_manifest_without_digest_still_loads_and_says_unsealed(bundle_copy):
    path = bundle_copy / "manifest.json"
    manifest = json.loads(path.read_text())
    assert len(manifest.pop("digest")) == 64 and load_bundle(bundle_copy).checksum == manifest_digest(manifest)
    path.write_text(json.dumps(manifest))  # as dfwatch 0.2 wrote it
    assert load_bundle(bundle_copy).checksum == "unsealed"


def test_missing_file_is_refused(bundle_copy):
    (bundle_copy / "content_trunk.pt").unlink()
    with pytest.raises(BundleError, match=r"content_trunk\.pt: missing \(content file of the bundle\)"):
        load_bundle(bundle_copy)


def test_manifest_from_a_newer_version_is_refused(bundle_copy):
    path = bundle_copy / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    rewrite_manifest(bundle_copy, manifest)
    with pytest.raises(BundleError) as e:
        load_bundle(bundle_copy)
    assert str(e.value).startswith(f"{path}: bundle format version {FORMAT_VERSION + 1} is newer than this dfwatch")


def test_manifest_without_required_fields_and_not_a_bundle(bundle_copy, tmp_path):
    path = bundle_copy / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["threshold"], manifest["crop"]
    rewrite_manifest(bundle_copy, manifest)
    with pytest.raises(BundleError, match="manifest lacks required fields: threshold, crop"):
        load_bundle(bundle_copy)
    path.write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(bundle_copy)
    with pytest.raises(BundleError, match="not a model bundle \\(no such directory\\)"):
        load_bundle(tmp_path / "nowhere")


def test_trained_head_and_mismatched_head(tmp_path, official_checkpoints):
    head = StyleGRUHead(StyleGRUConfig(gru_hidden=32, width=16, mlp_dim=32, fc_hidden=8))
    save_head(tmp_path / "head.pt", head)
    b = load_bundle(assemble(tmp_path / "b", official_checkpoints("psp", 0), official_checkpoints("slow_r50", 0),
                             head=tmp_path / "head.pt"))
    assert b.trained and b.id.startswith("stylegru-trained-") and b.manifest.head_config().gru_hidden == 32
    save_head(tmp_path / "head8.pt", StyleGRUHead(StyleGRUConfig(frames=8, content_tokens=1)))
    with pytest.raises(BundleError, match=r"the head expects \(frames, style levels, clips\) = \(8, 1, 1\)"):
        assemble(tmp_path / "c", official_checkpoints("psp", 0), official_checkpoints("slow_r50", 0),
                 head=tmp_path / "head8.pt")
    assert not (tmp_path / "c" / "manifest.json").exists()


def test_engines_bundle_and_info_commands(tmp_path, official_checkpoints, bundle_dir):
    r = subprocess.run(DFWATCH + ["engines", "bundle", "--psp", str(official_checkpoints("psp", 0)),
                                  "--r3d", str(official_checkpoints("slow_r50", 0)), "--out", str(tmp_path / "b"),
                                  "--levels", "0,9", "--id", "site-test"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "bundle site-test" in r.stdout and "style levels [0, 9]" in r.stdout and "UNTRAINED" in r.stdout
    r = subprocess.run(DFWATCH + ["engines", "info", str(bundle_dir)], capture_output=True, text=True)
    assert r.returncode == 0 and "onnx:style" in r.stdout
    r = subprocess.run(DFWATCH + ["engines", "info", str(tmp_path / "nothing")], capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.startswith("dfwatch engines info: ") and "Traceback" not in r.stderr
    r = subprocess.run(DFWATCH + ["engines", "bundle", "--psp", str(official_checkpoints("slow_r50", 0)),
                                  "--r3d", str(official_checkpoints("slow_r50", 0)), "--out", str(tmp_path / "x")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "not a pSp checkpoint" in r.stderr and r.stderr.count("\n") == 1
