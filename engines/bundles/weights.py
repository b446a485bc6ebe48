"""Where users get the official weights (the project ships none), as data for `dfwatch weights sources`."""
from __future__ import annotations

SOURCES = [
    {"file": "psp_ffhq_encode.pt", "model": "pSp encoder (GradualStyleEncoder, IR-SE50) + StyleGAN2 FFHQ decoder",
     "where": "pixel2style2pixel README, 'Pretrained Models' (eladrich/pixel2style2pixel, Google Drive link)",
     "size": "about 1.2 GB", "sha256": "unknown (not published; record yours with sha256sum)",
     "terms": "code MIT; the file contains NVIDIA's StyleGAN2 FFHQ generator under NVIDIA's non-commercial "
              "licence: check it before commercial use"},
    {"file": "SLOW_8x8_R50.pyth", "model": "pytorchvideo slow_r50, Kinetics-400 (3D ResNet-50 content trunk)",
     "where": "pytorchvideo model zoo (facebookresearch/pytorchvideo, MODEL_ZOO.md, Kinetics-400 'SLOW 8x8 R50')",
     "size": "about 250 MB", "sha256": "unknown (not published; record yours with sha256sum)",
     "terms": "Apache-2.0 repository"},
    {"file": "resnet50-11ad3fa6.pth", "model": "torchvision ResNet-50 ImageNet (the DLDFD trunk: `engines bundle --family dldfd --resnet50`)",
     "where": "torchvision ResNet50_Weights.IMAGENET1K_V2 (download.pytorch.org/models/resnet50-11ad3fa6.pth)",
     "size": "about 100 MB", "sha256": "11ad3fa6... (prefix in the file name)", "terms": "BSD-3-Clause repository"},
]
