"""Where users get the official weights (the project ships none), as data for `dfwatch weights
sources` and `dfwatch weights fetch`: `url` is a direct download (None: none exists), `sha256` the
full pinned checksum and `sha256_prefix` the part the publisher pins in the file name (None: not
published; fetch prints the checksum so you can record it)."""
from __future__ import annotations

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
]
