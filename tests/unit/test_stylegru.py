"""The StyleGRU head: seed configuration and Choi et al.'s StyleFlow configuration."""
from __future__ import annotations

import pytest
import torch

from engines.models.stylegru import LatentDropout, StyleGRUConfig, StyleGRUHead


def small(**kw) -> StyleGRUConfig:
    return StyleGRUConfig(**{**dict(gru_hidden=64, width=32, mlp_dim=64, fc_hidden=16), **kw})


def test_seed_head_defaults_and_output():
    cfg = StyleGRUConfig()
    assert (cfg.frames, cfg.style_levels, cfg.style_dim, cfg.content_dim, cfg.classifier) == (32, 1, 512, 2048, "two_fc")
    torch.manual_seed(0)
    head = StyleGRUHead(cfg).eval()
    style, content = torch.randn(3, 32, 1, 512), torch.randn(3, 2, 2048)
    with torch.no_grad():
        p = head.probability(style, content)
    assert p.shape == (3,) and ((p > 0) & (p < 1)).all()
    assert isinstance(head.classifier[0], torch.nn.Linear) and isinstance(head.classifier[3], torch.nn.Linear)


def test_every_dimension_comes_from_the_config():
    cfg = small(frames=8, content_tokens=3, content_dim=100, style_levels=2)
    head = StyleGRUHead(cfg).eval()
    with torch.no_grad():
        assert head(torch.randn(2, 8, 2, 512), torch.randn(2, 3, 100)).shape == (2,)
    assert head.positions.shape == (1, 4, 32) and head.style_gru.gru.input_size == 1024


def test_output_depends_on_style_and_on_content():
    torch.manual_seed(1)
    head = StyleGRUHead(small(dropout=0.0)).eval()
    s, c = torch.randn(1, 32, 1, 512), torch.randn(1, 2, 2048)
    with torch.no_grad():
        base = head(s, c)
        assert not torch.allclose(base, head(s + torch.randn_like(s), c))
        assert not torch.allclose(base, head(s, c + torch.randn_like(c)))


def test_gradients_reach_every_parameter():
    head = StyleGRUHead(small()).train()
    head(torch.randn(4, 32, 1, 512), torch.randn(4, 2, 2048)).sum().backward()
    missing = [n for n, p in head.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_styleflow_configuration_matches_the_paper():
    cfg = StyleGRUConfig.styleflow()
    assert cfg.steps == 31 and cfg.gru_input == 9216 and cfg.embedding_dim == 16384
    with torch.device("meta"):
        head = StyleGRUHead(cfg)
    gru_params = sum(p.numel() for p in head.style_gru.parameters())
    assert round(gru_params / 1e6, 1) == 763.5  # MODELS.md: "That GRU alone is 763.5 M parameters"
    assert head.style_gru.hidden_state.shape == (4, 1, 4096)
    assert head.style_gru.bn.num_features == 31
    assert head.style_gru.gru.bidirectional and head.style_gru.gru.num_layers == 2
    assert head.style_gru.gru.dropout == pytest.approx(0.1)
    assert len(head.transformer.layers) == 1 and head.transformer.layers[0].norm_first
    assert head.transformer.layers[0].self_attn.num_heads == 16
    assert head.transformer.layers[0].linear1.out_features == 2048
    assert isinstance(head.classifier[0], torch.nn.LayerNorm)
    # the official StyleGRU's state-dict names, so its released weights load into head.style_gru
    keys = set(head.style_gru.state_dict())
    assert {"hidden_state", "bn.running_mean", "gru.weight_ih_l0", "gru.weight_hh_l1_reverse",
            "dense.1.fn.net.0.weight", "dense.3.weight"} <= keys


def test_styleflow_structure_at_small_width():
    """StyleFlow wiring with small dimensions: flow input, final-state tokens, zero-init attention."""
    cfg = StyleGRUConfig.styleflow(style_levels=2, gru_hidden=32, width=16, mlp_dim=32, stage1_hidden=8,
                                   transformer_heads=4)
    torch.manual_seed(0)
    head = StyleGRUHead(cfg).eval()
    assert torch.count_nonzero(head.attention.out_proj.weight) == 0
    s = torch.randn(2, 32, 2, 512)
    tokens, embedding = head.style_gru(s)
    assert embedding.shape == (2, 4 * 32) and tokens.shape == (2, 8, 16)
    seq = head.style_gru.sequence(s)
    torch.testing.assert_close(seq[:, 0], (s[:, 1] - s[:, 0]).flatten(1))  # level-major flow
    constant = s[:, :1].expand(-1, 32, -1, -1)
    assert head.style_gru.sequence(constant).abs().max() == 0  # no motion -> zero flow
    assert head.style_gru.stage1_logits(embedding).shape == (2,)
    with torch.no_grad():
        assert head(s, torch.randn(2, 2, 2048)).shape == (2,)


def test_latent_dropout_masks_paired_positions_for_all_frames():
    torch.manual_seed(3)
    drop = LatentDropout(0.5).train()
    y = drop(torch.ones(2, 5, 8))
    mask = y[0, 0] != 0
    assert (y != 0).eq(mask).all()                       # same mask for every frame and sample
    assert torch.equal(mask[:4], mask[4:])               # j and j + D/2 share an entry
    assert set(y.unique().tolist()) <= {0.0, 2.0}        # kept values rescaled by 1/(1-p)
    drop.eval()
    assert torch.equal(drop(torch.ones(2, 5, 8)), torch.ones(2, 5, 8))


def test_config_round_trip_and_validation():
    cfg = StyleGRUConfig.styleflow()
    assert StyleGRUConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="not a multiple of width"):
        StyleGRUConfig(style_tokens="final_states", gru_hidden=100, width=64)


def test_input_standardisation_is_identity_until_fitted_and_travels_with_the_weights():
    torch.manual_seed(0)
    head = StyleGRUHead(small()).eval()
    s, c = torch.randn(4, 32, 1, 512) * 3 + 5, torch.randn(4, 2, 2048) + 1
    with torch.no_grad():
        before = head(s, c)
        head.set_input_stats(s, c)
        after = head(s, c)
        shifted = StyleGRUHead(small()).eval()
        shifted.load_state_dict(head.state_dict())
        torch.testing.assert_close(shifted((s - 5) / 3 * 3 + 5, c), after)  # stats are in the state dict
    assert not torch.allclose(before, after)
    torch.testing.assert_close(head.style_mean, s.mean(dim=(0, 1)))
