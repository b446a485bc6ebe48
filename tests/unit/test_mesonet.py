"""MesoNet: the PyTorch rebuild reads the published Keras files and is the official network
(every logit within 1e-4 of the authors' architecture in Keras, float64, in torch and in ONNX
Runtime), and the served detector calls the authors' Deepfake test images fake and their real
ones real, as the published weights do. Data: tests/data/parity/mesonet/ (its README)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import REPO
from engines.families.mesonet import SHIPPED
from engines.models.checkpoints import identify, load_mesonet
from engines.models.mesonet import MesoProbability

DATA = REPO / "tests" / "data" / "parity" / "mesonet"
FILES = ("Meso4_DF", "Meso4_F2F", "MesoInception_DF", "MesoInception_F2F")
INPUTS = ("images", "seed0", "seed1")


def network_input(tag: str) -> np.ndarray:
    """(N, 3, 256, 256) float32 in [0, 1], as the fixtures were made."""
    x = np.load(DATA / f"mesonet_input_{tag}.npy")
    x = x.astype(np.float32) / 255 if x.dtype == np.uint8 else x
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


@pytest.mark.parametrize("name", FILES)
def test_the_rebuild_reads_the_published_file_and_matches_the_official_logits(name):
    net = load_mesonet(SHIPPED / f"{name}.h5")
    assert net.architecture == ("meso4" if name.startswith("Meso4") else "mesoinception4")
    for tag in INPUTS:
        reference = np.load(DATA / f"mesonet_{name}_{tag}_logit_f64.npy")
        with torch.no_grad():
            logits = net(torch.from_numpy(network_input(tag))).numpy()
        np.testing.assert_allclose(logits, reference, rtol=0, atol=1e-4, err_msg=f"{name} on {tag}")


@pytest.mark.parametrize("name", FILES)
def test_a_bundle_of_each_file_serves_the_same_network_in_torch_and_onnx_runtime(name, tmp_path):
    """The served path: `engines bundle --family mesonet --weights FILE`, `engines export`, the
    torch and ONNX Runtime runners: P(fake) = sigmoid(-logit) within what 1e-4 on the logit allows."""
    from engines.backends import open_runners
    from engines.bundles.bundle import load_bundle
    from engines.bundles.export import export_bundle
    from engines.families.mesonet import assemble

    bundle = load_bundle(assemble(tmp_path / "b", SHIPPED / f"{name}.h5"))
    assert bundle.trained and bundle.manifest.frame.training_set == name.split("_")[1]
    assert bundle.manifest.sources["sha256"] == __import__("hashlib").sha256(
        (SHIPPED / f"{name}.h5").read_bytes()).hexdigest()
    export_bundle(bundle.root)
    bundle = load_bundle(bundle.root)
    for backend in ("torch", "onnxruntime"):
        runners, choice = open_runners(bundle, backend, "cpu", threads=1)
        assert choice.backend == backend
        for tag in INPUTS:
            p_fake = runners["frame"].run(network_input(tag))
            reference = np.load(DATA / f"mesonet_{name}_{tag}_logit_f64.npy")
            np.testing.assert_allclose(np.asarray(p_fake).reshape(-1), 1 / (1 + np.exp(reference)), rtol=0,
                                       atol=2.5e-5, err_msg=f"{name} {tag} {backend}")


@pytest.mark.parametrize("name", ("Meso4_DF", "MesoInception_DF"))
def test_the_deepfake_networks_call_the_authors_df_images_fake_and_real_images_real(name):
    served = MesoProbability(load_mesonet(SHIPPED / f"{name}.h5")).eval()
    with torch.no_grad():
        p_fake = served(torch.from_numpy(network_input("images"))).numpy()
    assert (p_fake[:2] > 0.5).all() and (p_fake[2:] < 0.5).all(), p_fake   # df_df00204, df_df01254 | real, real


def test_weights_check_names_the_published_files_and_refuses_a_broken_one(tmp_path):
    meso4 = identify(SHIPPED / "Meso4_DF.h5")
    inception = identify(SHIPPED / "MesoInception_F2F.h5")
    assert meso4 == {"kind": "MesoNet Meso4 (Keras HDF5)", "parameters": 27977, "loads": True, "detail": ""}
    assert inception["kind"] == "MesoNet MesoInception4 (Keras HDF5)" and inception["loads"]
    broken = tmp_path / "broken.h5"
    broken.write_bytes((SHIPPED / "Meso4_DF.h5").read_bytes()[:4000])
    result = identify(broken)
    assert not result["loads"] and "not a MesoNet Keras weight file" in result["detail"]


def test_the_meso_crop_centres_the_nose_and_stands_the_face_upright():
    """MesoNet's crop on MTCNN's landmarks: a face tilted 30 degrees comes out upright, nose centred."""
    import cv2

    from engines.families.mesonet import crop_policy
    from engines.pipeline.preprocess import Face, crop_transform

    eye_l, eye_r, nose, mouth_l, mouth_r = np.array([[100, 100], [140, 100], [120, 120], [105, 145], [135, 145]], float)
    angle = np.deg2rad(30)
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = (np.stack([eye_l, eye_r, nose, mouth_l, mouth_r]) - nose) @ turn.T + [200, 200]
    face = Face(box=np.array([150, 150, 250, 250], float), landmarks=points, prob=0.99)
    m = crop_transform(face, (400, 400, 3), crop_policy())
    mapped = cv2.transform(points[None].astype(np.float32), m)[0]
    np.testing.assert_allclose(mapped[2], [128, 128], atol=1e-3)                 # the nose at the centre
    eyes, mouth = (mapped[0] + mapped[1]) / 2, (mapped[3] + mapped[4]) / 2
    assert abs(mouth[0] - eyes[0]) < 1e-3 and mouth[1] > eyes[1]                 # eye-mouth axis vertical, down
    side = 256 / (1.3 * 2.2 * max(40.0, np.hypot(0, 45)))                       # pixels per face unit
    np.testing.assert_allclose(np.hypot(*(mapped[1] - mapped[0])), 40 * side, rtol=1e-4)


def test_an_ensemble_serves_the_mean_of_its_members_and_pins_them(tmp_path):
    """MesoNet DF + F2F: per face the mean of the two networks' P(fake), in torch and ONNX Runtime;
    a member file changed afterwards is refused."""
    from engines.backends import open_runners
    from engines.bundles.bundle import load_bundle
    from engines.bundles.export import export_bundle
    from engines.errors import BundleError
    from engines.families import ensemble, mesonet

    members = [load_bundle(mesonet.assemble(tmp_path / n, SHIPPED / f"{n}.h5")) for n in ("Meso4_DF", "Meso4_F2F")]
    bundle = load_bundle(ensemble.assemble(tmp_path / "ens", members))
    assert [m.id for m in bundle.manifest.frame.members] == [b.id for b in members]
    export_bundle(bundle.root)
    bundle = load_bundle(bundle.root)
    x = network_input("images")
    expected = np.mean([1 / (1 + np.exp(np.load(DATA / f"mesonet_{n}_images_logit_f64.npy")))
                        for n in ("Meso4_DF", "Meso4_F2F")], axis=0)
    for backend in ("torch", "onnxruntime"):
        runners, _ = open_runners(bundle, backend, "cpu", threads=1)
        np.testing.assert_allclose(np.asarray(runners["frame"].run(x)).reshape(-1), expected, rtol=0, atol=2.5e-5)
    member = bundle.root / bundle.manifest.frame.members[1].file
    member.write_bytes(member.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(BundleError, match="ensemble member mesonet-Meso4_F2F-.* is missing or changed"):
        bundle.module("frame")
    with pytest.raises(BundleError, match="at least two member bundles"):
        ensemble.assemble(tmp_path / "one", members[:1])


def test_fine_tuning_starts_from_the_published_network_and_writes_it_back_the_same_way_up(tmp_path):
    """`dfwatch train fit`'s hooks: the trainable network gives P(fake)'s logits (the published one
    P(real)'s), a file it saves loads as the same served detector, in the published orientation."""
    from engines.bundles.bundle import load_bundle
    from engines.families.mesonet import FAMILY, assemble

    bundle = load_bundle(assemble(tmp_path / "b", SHIPPED / "Meso4_DF.h5"))
    trainable = FAMILY.trainable(bundle).eval()
    x = torch.from_numpy(network_input("images"))
    with torch.no_grad():
        served = bundle.module("frame")(x)
        np.testing.assert_allclose(torch.sigmoid(trainable(x)).numpy(), served.numpy(), atol=1e-6)
        FAMILY.save_trained(tmp_path / "tuned.pt", trainable)
        again = FAMILY.probability(FAMILY.load_trained(tmp_path / "tuned.pt"))(x)
        np.testing.assert_allclose(again.numpy(), served.numpy(), atol=1e-6)
        np.testing.assert_allclose(load_mesonet(tmp_path / "tuned.pt")(x).numpy(),
                                   np.load(DATA / "mesonet_Meso4_DF_images_logit_f64.npy"), atol=1e-4)
    retrained = load_bundle(assemble(tmp_path / "b2", tmp_path / "tuned.pt"))
    assert retrained.manifest.frame.training_set == "fine-tuned" and retrained.manifest.sources["published"] is None
