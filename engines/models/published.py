"""Where users get the official weights (the project ships MesoNet's only), as data for `dfwatch weights
sources` and `dfwatch weights fetch`: `url` is a direct download (None: none exists), `sha256` the
full pinned checksum and `sha256_prefix` the part the publisher pins in the file name (None: not
published; fetch prints the checksum so you can record it)."""
from __future__ import annotations

TRAINING_DATA = {"FFPP": "FaceForensics++ (c23)", "DFDC": "the DFDC training set"}

SOURCES = [
    {"file": "psp_ffhq_encode.pt", "model": "pSp encoder (GradualStyleEncoder, IR-SE50) + StyleGAN2 FFHQ decoder",
     "where": "pixel2style2pixel README, 'Pretrained Models' (eladrich/pixel2style2pixel, Google Drive link)",
     "size": "about 1.2 GB", "sha256": None,
     "terms": "code MIT; the file contains NVIDIA's StyleGAN2 FFHQ generator under NVIDIA's non-commercial "
              "licence: check it before commercial use",
     # the Drive file of the README's link; Drive may refuse automated downloads (quota): use --from a mirror
     "url": "https://drive.usercontent.google.com/download?id=1bMTNWkh5LArlaWSc_wa8VKyq2V42T2z0&export=download&confirm=t",
     "sha256_prefix": None},
    {"file": "SLOW_8x8_R50.pyth", "model": "pytorchvideo slow_r50, Kinetics-400 (3D ResNet-50 content trunk)",
     "where": "pytorchvideo model zoo (facebookresearch/pytorchvideo, MODEL_ZOO.md, Kinetics-400 'SLOW 8x8 R50')",
     "size": "about 250 MB", "sha256": None,
     "terms": "Apache-2.0 repository",
     "url": "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/SLOW_8x8_R50.pyth",  # pytorchvideo's hub
     "sha256_prefix": None},
    {"file": "resnet50-11ad3fa6.pth", "model": "torchvision ResNet-50 ImageNet (the DLDFD trunk: `engines bundle --family dldfd --resnet50`)",
     "where": "torchvision ResNet50_Weights.IMAGENET1K_V2 (download.pytorch.org/models/resnet50-11ad3fa6.pth)",
     "size": "about 100 MB", "sha256": None, "terms": "BSD-3-Clause repository",
     "url": "https://download.pytorch.org/models/resnet50-11ad3fa6.pth",
     "sha256_prefix": "11ad3fa6"},  # torchvision checks this prefix of the file's sha256
] + [
    {"name": f"icpr-{variant}-{data.lower()}", "file": f"{stem}_{data}_bestval-{sha}.pth",
     "model": f"ICPR 2020 {title} trained on {TRAINING_DATA[data]} (the {'icpr-' + variant} family: "
              f"`engines bundle --family icpr-{variant} --weights FILE`)",
     "where": "polimi-ispl/icpr2020dfdc, architectures/weights.py (Bonettini et al., ICPR 2020)",
     "size": "about 70 MB", "sha256": sha, "training_data": TRAINING_DATA[data],
     "terms": "research use: trained on " + TRAINING_DATA[data] + ", whose terms allow research use only; "
              "the authors' code is GPL-3.0 (dfwatch does not use it)",
     "url": f"https://f002.backblazeb2.com/file/icpr2020/{stem}_{data}_bestval-{sha}.pth",
     "sha256_prefix": None}
    for variant, stem, title, data, sha in (
        ("b4", "EfficientNetB4", "EfficientNet-B4", "FFPP", "93aaad84946829e793d1a67ed7e0309b535e2f2395acb4f8d16b92c0616ba8d7"),
        ("b4att", "EfficientNetAutoAttB4", "EfficientNet-B4 + attention", "FFPP",
         "b0c9e9522a7143cf119843e910234be5e30f77dc527b1b427cdffa5ce3bdbc25"),
        ("b4", "EfficientNetB4", "EfficientNet-B4", "DFDC", "c9f3663e2116d3356d056a0ce6453e0fc412a8df68ebd0902f07104d9129a09a"),
        ("b4att", "EfficientNetAutoAttB4", "EfficientNet-B4 + attention", "DFDC",
         "72ed969b2a395fffe11a0d5bf0a635e7260ba2588c28683630d97ff7153389fc"))]


MESONET_SHA256 = {
    "Meso4_DF.h5": "036ed30d04ffd9c7506f825b97c86aa64915f5818931da96817b169aad790af5",
    "Meso4_F2F.h5": "bcfda015d217b9f8d6557693edbdf9f4e79cfd22672541968dd0e2954462b5d7",
    "MesoInception_DF.h5": "234586d40058e76ef8b6f27ca4b63c06e31c2a5a69c0d8ba6f30b1468ab7bafa",
    "MesoInception_F2F.h5": "d4533ac8a3197dc35c47405d23d99e888c1d0135e267e03540c7451feaccff3f",
}
MESONET_DATA = {"DF": "the authors' Deepfake set (Afchar et al., WIFS 2018)",
                "F2F": "Face2Face (FaceForensics, Rössler et al. 2018)"}
# shipped inside the package (engines/models/weights/mesonet/, with their LICENSE and NOTICE): no download
SOURCES += [
    {"name": f"mesonet-{file.split('.')[0].replace('_', '-').lower()}", "file": file,
     "model": f"MesoNet {'Meso4' if file.startswith('Meso4') else 'MesoInception4'} trained on "
              f"{MESONET_DATA[file.split('_')[1].split('.')[0]]} (the mesonet family: "
              f"`engines bundle --family mesonet --weights FILE`; shipped with dfwatch)",
     "where": "DariusAf/MesoNet, weights/ (commit 2144d56); shipped in dfwatch's engines/models/weights/mesonet/",
     "size": "about 0.2 MB", "sha256": sha, "training_data": MESONET_DATA[file.split("_")[1].split(".")[0]],
     "terms": "Apache-2.0 (LICENSE and NOTICE beside the files)", "shipped": True,
     "url": f"https://raw.githubusercontent.com/DariusAf/MesoNet/2144d56a30e48cdcac1976ff13a1c5cdc86376c6/weights/{file}",
     "sha256_prefix": None}
    for file, sha in MESONET_SHA256.items()]


def published_source(file_name: str) -> dict | None:
    """The SOURCES entry of a published file, by its name (None: not one of them)."""
    return next((s for s in SOURCES if s["file"] == file_name), None)
