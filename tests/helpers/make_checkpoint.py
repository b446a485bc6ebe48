#!/usr/bin/env python3
"""Deterministic synthetic checkpoints in the official pSp / pytorchvideo file layouts.

The project's parity generator (written for dfwatch; its reference copy and the fixtures made
with it are described in tests/data/README.md): the tests build every official-format
checkpoint with it, from the key manifests in tests/data/checkpoints/.

    make_checkpoint.py psp      OUT.pt   --seed S [--encoder-keys TSV] [--decoder-keys TSV]
    make_checkpoint.py slow_r50 OUT.pyth --seed S [--keys TSV]
    make_checkpoint.py icpr_effnetb4|icpr_effnetb4att OUT.pth --seed S [--keys TSV]

Random, NOT trained, weights. Key names and shapes come from a manifest TSV (header line,
then `name<TAB>shape`, shape written like `(64, 3, 3, 3)`); no model code is imported.
Each tensor depends only on (key as stored in the file, shape, seed); pSp keys carry their
'encoder.' / 'decoder.' prefix.

  N = float64 standard normals from numpy's legacy RandomState (MT19937 + polar Box-Muller,
      a stream NumPy freezes by policy, NEP 19), seeded per tensor with
      s = (seed * 1_000_003 + zlib.crc32(key)) % 2**63 given as the words [s & 0xFFFFFFFF, s >> 32].
      Values are computed in float64 and stored as float32.

Value rules, first match wins. "module" = key minus its last component; the module is a
BatchNorm ("BN") iff the manifest also has `<module>.running_mean`.
   1  *.num_batches_tracked            tensor(0, dtype=int64)
   2  *.running_mean                   0.1 * N
   3  *.running_var                    1 + 0.1 * |N|
   4  latent_avg                       N        (pSp W+ average, 18 x 512)
   5  *styles.<i>.linear.weight        N        (pSp EqualLinear: scaled by 1/sqrt(in) at run time)
   6  any tensor with ndim >= 2        N / sqrt(prod(shape[1:]))   (LeCun; conv / linear weights)
   7  *.weight of a BN module          1 + 0.1 * N
   8  *.bias of a BN module            0.1 * N
   9  *.bias, all others               0.01 * N
  10  1-D *.weight, module has a bias  1 + 0.1 * N      (norm affine without running stats;
                                                         none in the pSp / slow_r50 manifests)
  11  1-D *.weight, module has no bias 0.25 + 0.01 * N  (PReLU slope; in pSp exactly
                                       input_layer.2.weight and body.<i>.res_layer.2.weight)
  12  anything else                    error
Rule 6 uses 1/fan_in, not He's 2/fan_in: eval-mode BatchNorm uses the synthetic running stats,
so nothing renormalises, and with He the residual sums grow ~1.4x in std per block (pSp body
output std ~1e3 with >99% of the SE sigmoids saturated, which would hide SE errors; slow_r50
trunk std ~170). With 1/fan_in activations stay O(0.1..1) in both models.
pSp `decoder.*` (StyleGAN2) tensors follow the same rules; they are there so that the whole
checkpoint loads strictly and are not calibrated for running the generator (rule 11 also
catches its NoiseInjection `noise.weight`, shape (1,)).

The printed sha256 (`digest()`: names, dtypes, shapes and bytes of all tensors) identifies the
checkpoint the parity fixtures were made from.
"""
import argparse
import hashlib
import math
import os
import re
import zlib

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
MANIFESTS = os.path.join(HERE, '..', 'data', 'checkpoints')   # tests/data/checkpoints
EQUAL_LINEAR = re.compile(r'(^|\.)styles\.\d+\.linear\.weight$')


def read_manifest(path):
    """[(name, shape tuple)] from a `name<TAB>shape` TSV with a header line."""
    with open(path) as f:
        lines = [line for line in f.read().splitlines()[1:] if line.strip()]
    rows = [line.split('\t') for line in lines]
    return [(n, tuple(int(t) for t in s.strip('()').split(',') if t.strip())) for n, s in rows]


def normals(key, shape, seed):
    s = (seed * 1_000_003 + zlib.crc32(key.encode())) % 2**63
    return np.random.RandomState([s & 0xFFFFFFFF, s >> 32]).standard_normal(size=shape)


def make_tensor(key, shape, seed, keyset):
    module, _, leaf = key.rpartition('.')
    is_bn = module + '.running_mean' in keyset
    if leaf == 'num_batches_tracked':
        return torch.tensor(0, dtype=torch.long)
    n = normals(key, shape, seed)
    if leaf == 'running_mean':
        v = 0.1 * n
    elif leaf == 'running_var':
        v = 1 + 0.1 * np.abs(n)
    elif key == 'latent_avg' or EQUAL_LINEAR.search(key):
        v = n
    elif len(shape) >= 2:
        v = n / math.sqrt(math.prod(shape[1:]))
    elif leaf == 'weight' and is_bn:
        v = 1 + 0.1 * n
    elif leaf == 'bias':
        v = (0.1 if is_bn else 0.01) * n
    elif leaf == 'weight' and len(shape) == 1:
        v = 1 + 0.1 * n if module + '.bias' in keyset else 0.25 + 0.01 * n
    else:
        raise ValueError(f'no value rule for {key} {shape}')
    return torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))


def make_state_dict(rows, seed, prefix=''):
    keyset = {prefix + name for name, _ in rows}
    return {prefix + n: make_tensor(prefix + n, shape, seed, keyset) for n, shape in rows}


PSP_OPTS = dict(  # plain dict with the fields of pSp's training options
    exp_dir='synthetic', dataset_type='ffhq_encode', encoder_type='GradualStyleEncoder',
    input_nc=3, label_nc=0, output_size=1024, batch_size=8, test_batch_size=8, workers=8,
    test_workers=8, learning_rate=0.0001, optim_name='ranger', train_decoder=False,
    start_from_latent_avg=True, learn_in_w=False, lpips_lambda=0.8, id_lambda=0.1,
    l2_lambda=1.0, w_norm_lambda=0.0, lpips_lambda_crop=0.0, l2_lambda_crop=0.0,
    stylegan_weights='', checkpoint_path=None, max_steps=500000, image_interval=100,
    board_interval=50, val_interval=1000, save_interval=None, resize_factors=None, device='cuda:0')


def build_psp(seed, encoder_keys, decoder_keys):
    sd = make_state_dict(read_manifest(encoder_keys), seed, prefix='encoder.')
    sd.update(make_state_dict(read_manifest(decoder_keys), seed))  # names carry 'decoder.'
    return {'state_dict': sd, 'opts': dict(PSP_OPTS),
            'latent_avg': make_tensor('latent_avg', (18, 512), seed, set())}


def build_slow_r50(seed, keys):
    return {'model_state': make_state_dict(read_manifest(keys), seed)}


def build_icpr(seed, keys):
    """The file layout of the ICPR 2020 detectors' `*_bestval-<sha256>.pth` (polimi-ispl/icpr2020dfdc
    train_binclass.save_model): the network under 'net', beside optimiser state and bookkeeping."""
    sd = make_state_dict(read_manifest(keys), seed)
    # swish and the squeeze-excitation gates shrink the signal block by block: with rule 6 alone the
    # output no longer depends on the input (features of two images agree to 3e-7), so every
    # ndim >= 2 tensor is scaled by 1.4 (features then differ between inputs by ~1 % of their range; 1.5 already diverges for some seeds)
    sd = {k: v * 1.4 if v.ndim >= 2 else v for k, v in sd.items()}
    opt = {'state': {}, 'param_groups': [{'lr': 1e-5, 'betas': (0.9, 0.999), 'eps': 1e-8, 'weight_decay': 0,
                                          'amsgrad': False, 'params': list(range(len(sd)))}]}
    return {'net': sd, 'opt': opt, 'train_loss': 0.0, 'val_loss': 0.0, 'iteration': 0, 'batch_size': 32, 'epoch': 0}


def digest(ckpt):
    """sha256 over every tensor (path, dtype, shape, bytes) of a checkpoint dict, keys sorted."""
    h = hashlib.sha256()

    def walk(path, obj):
        if isinstance(obj, dict):
            for k in sorted(obj):
                walk(f'{path}/{k}', obj[k])
        elif isinstance(obj, torch.Tensor):
            t = obj.detach().cpu().contiguous()
            h.update(f'{path}|{t.dtype}|{tuple(t.shape)}|'.encode())
            h.update(t.numpy().tobytes())
    walk('', ckpt)
    return h.hexdigest()


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('model', choices=['psp', 'slow_r50', 'icpr_effnetb4', 'icpr_effnetb4att'])
    p.add_argument('out')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--encoder-keys', default=os.path.join(MANIFESTS, 'psp_encoder_keys.tsv'))
    p.add_argument('--decoder-keys', default=os.path.join(MANIFESTS, 'psp_decoder_keys.tsv'))
    p.add_argument('--keys', default=None, help='slow_r50 / icpr manifest (default: tests/data/checkpoints/<model>_keys.tsv)')
    a = p.parse_args()
    keys = a.keys or os.path.join(MANIFESTS, f'{a.model}_keys.tsv')
    if a.model == 'psp':
        ckpt = build_psp(a.seed, a.encoder_keys, a.decoder_keys)
    elif a.model == 'slow_r50':
        ckpt = build_slow_r50(a.seed, keys)
    else:
        ckpt = build_icpr(a.seed, keys)
    torch.save(ckpt, a.out)
    print(f'{a.out}  seed={a.seed}  sha256(tensors)={digest(ckpt)}')


if __name__ == '__main__':
    main()
