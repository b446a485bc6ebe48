"""The StyleGRU fusion head: style sequence (GRU) x content clips (attention) -> transformer -> P(fake).

Two configurations, every dimension from `StyleGRUConfig`:
- `StyleGRUConfig()` — the seed design: pSp level 9 (512-d) per frame, 32 frames, a GRU over
  the sequence whose per-step outputs are the style keys/values, style attention with the content
  clip features as queries, a transformer encoder with a learned class token, two FC layers.
- `StyleGRUConfig.styleflow()` — Choi et al., CVPR 2024 ("Exploiting Style Latent Flows";
  jongwook-Choi/StyleFlow): 18-level style flow (first differences, 31 steps for 32 frames),
  latent dropout 0.2, BatchNorm1d over the time steps, 2-layer bidirectional GRU (hidden 4096,
  learned initial state), embedding = the four final states (16 tokens x 1024), single-head style
  attention with a zero-initialised output projection added to the content tokens, one pre-norm
  transformer layer (16 heads, MLP 2048), LayerNorm + Linear. Its style branch keeps the official
  StyleGRU attribute names (`hidden_state`, `gru`, `bn`, `dense`), so a released StyleGRU
  state dict loads into `head.style_gru` strictly.
`forward` returns logits; `probability` applies the sigmoid.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import nn


@dataclass(frozen=True)
class StyleGRUConfig:
    # inputs
    frames: int = 32                  # T, frames per window
    style_levels: int = 1             # W+ levels per frame (1 = level 9; 18 = all)
    style_dim: int = 512
    content_tokens: int = 2           # content clips per window (32 frames / 16-frame clips)
    content_dim: int = 2048           # 3D ResNet-50 feature size
    # style branch
    style_flow: bool = False          # feed first differences between frames (T - 1 steps)
    latent_dropout: float = 0.0       # training-time dropout of latent positions (same mask for all frames)
    time_batchnorm: bool = False      # BatchNorm1d with the time steps as channels
    gru_hidden: int = 512
    gru_layers: int = 1
    bidirectional: bool = False
    gru_dropout: float = 0.0
    learned_h0: bool = False          # learned initial GRU state
    style_tokens: Literal["sequence", "final_states"] = "sequence"
    stage1_hidden: int = 0            # >0: StyleFlow's stage-1 classifier on the GRU embedding (BCE + triplet)
    stage1_dropout: float = 0.5
    # fusion
    width: int = 256                  # token width of attention and transformer
    attn_heads: int = 1
    attn_out_proj: bool = False       # an output projection after the style attention
    zero_init_attn_out: bool = False  # ... initialised to zero (StyleFlow)
    transformer_layers: int = 1
    transformer_heads: int = 4
    mlp_dim: int = 512
    dropout: float = 0.1
    classifier: Literal["two_fc", "ln_linear"] = "two_fc"
    fc_hidden: int = 128

    @property
    def steps(self) -> int:
        return self.frames - 1 if self.style_flow else self.frames

    @property
    def gru_input(self) -> int:
        return self.style_levels * self.style_dim

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def embedding_dim(self) -> int:
        return self.gru_layers * self.directions * self.gru_hidden

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "StyleGRUConfig":
        return cls(**d)

    @classmethod
    def styleflow(cls, **overrides) -> "StyleGRUConfig":
        base = dict(style_levels=18, style_flow=True, latent_dropout=0.2, time_batchnorm=True,
                    gru_hidden=4096, gru_layers=2, bidirectional=True, gru_dropout=0.1, learned_h0=True,
                    style_tokens="final_states", stage1_hidden=4096, width=1024, attn_heads=1,
                    attn_out_proj=True, zero_init_attn_out=True, transformer_layers=1,
                    transformer_heads=16, mlp_dim=2048, classifier="ln_linear")
        return cls(**{**base, **overrides})

    def __post_init__(self):
        if self.style_tokens == "final_states" and self.embedding_dim % self.width:
            raise ValueError(f"final-state embedding {self.embedding_dim} is not a multiple of width {self.width}")
        if self.width % self.attn_heads or self.width % self.transformer_heads:
            raise ValueError(f"width {self.width} must be divisible by the attention and transformer heads")
        if self.style_flow and self.frames < 2:
            raise ValueError("style flow needs at least 2 frames")


class LatentDropout(nn.Module):
    """Drops latent positions for the whole clip (one mask for all frames and the batch);
    positions j and j + D/2 share a mask entry, as in the official StyleGRU."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.bernoulli(torch.full((x.shape[-1] // 2,), 1 - self.p, device=x.device, dtype=x.dtype))
        return x * keep.repeat(2) / (1 - self.p)


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Residual(nn.Module):
    def __init__(self, fn: nn.Module):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x) + x


class StyleGRU(nn.Module):
    """Style branch: (B, T, levels*512) codes -> (tokens (B, N, D), embedding (B, E))."""

    def __init__(self, cfg: StyleGRUConfig):
        super().__init__()
        self.cfg = cfg
        self.dropout_latent = LatentDropout(cfg.latent_dropout)
        self.bn = nn.BatchNorm1d(cfg.steps) if cfg.time_batchnorm else None
        self.gru = nn.GRU(cfg.gru_input, cfg.gru_hidden, num_layers=cfg.gru_layers, batch_first=True,
                          dropout=cfg.gru_dropout if cfg.gru_layers > 1 else 0.0, bidirectional=cfg.bidirectional)
        n_states = cfg.gru_layers * cfg.directions
        if cfg.learned_h0:
            self.hidden_state = nn.Parameter(torch.randn(n_states, 1, cfg.gru_hidden))
        else:
            self.register_buffer("hidden_state", torch.zeros(n_states, 1, cfg.gru_hidden), persistent=False)
        self.dense = None
        if cfg.stage1_hidden:
            e = cfg.embedding_dim
            self.dense = nn.Sequential(nn.Dropout(cfg.stage1_dropout),
                                       Residual(FeedForward(e, cfg.stage1_hidden, cfg.stage1_dropout)),
                                       nn.Dropout(cfg.stage1_dropout), nn.Linear(e, 1))

    def sequence(self, style: torch.Tensor) -> torch.Tensor:
        """(B, T, L, 512) or (B, T, L*512) codes -> the GRU input sequence (B, steps, L*512)."""
        x = style.flatten(2)  # level-major: level 0's 512 values, then level 1's, ...
        return x[:, 1:] - x[:, :-1] if self.cfg.style_flow else x

    def forward(self, style: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.dropout_latent(self.sequence(style))
        if self.bn is not None:
            x = self.bn(x)
        h0 = self.hidden_state.expand(-1, x.shape[0], -1).contiguous()
        outputs, hidden = self.gru(x, h0)
        embedding = torch.cat(list(hidden), dim=1)  # (B, layers*dirs*H), layer-major as in StyleGRU
        if self.cfg.style_tokens == "final_states":
            tokens = embedding.reshape(x.shape[0], -1, self.cfg.width)
        else:
            tokens = outputs
        return tokens, embedding

    def stage1_logits(self, embedding: torch.Tensor) -> torch.Tensor:
        if self.dense is None:
            raise RuntimeError("this configuration has no stage-1 classifier (stage1_hidden=0)")
        return self.dense(embedding).squeeze(-1)


class StyleAttention(nn.Module):
    """Content tokens attend to style tokens (query = content, key/value = style); the result is
    added to the content tokens."""

    def __init__(self, width: int, style_dim: int, heads: int, out_proj: bool, zero_init: bool):
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(style_dim, width)
        self.v_proj = nn.Linear(style_dim, width)
        self.out_proj = nn.Linear(width, width) if out_proj else None
        if self.out_proj is not None and zero_init:
            nn.init.zeros_(self.out_proj.weight)
            nn.init.zeros_(self.out_proj.bias)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, w = x.shape
        return x.reshape(b, n, self.heads, w // self.heads).transpose(1, 2)

    def forward(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.q_proj(content)), self._split(self.k_proj(style)), self._split(self.v_proj(style))
        attn = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
        out = (attn @ v).transpose(1, 2).flatten(2)
        if self.out_proj is not None:
            out = self.out_proj(out)
        return content + out


class StyleGRUHead(nn.Module):
    """forward(style (B, T, L, 512), content (B, N_clips, 2048)) -> logits (B,)."""

    def __init__(self, cfg: StyleGRUConfig = StyleGRUConfig()):
        super().__init__()
        self.cfg = cfg
        self.style_gru = StyleGRU(cfg)
        style_token_dim = cfg.width if cfg.style_tokens == "final_states" else cfg.directions * cfg.gru_hidden
        self.content_proj = nn.Linear(cfg.content_dim, cfg.width)
        self.attention = StyleAttention(cfg.width, style_token_dim, cfg.attn_heads, cfg.attn_out_proj,
                                        cfg.zero_init_attn_out)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.width))
        self.positions = nn.Parameter(torch.zeros(1, 1 + cfg.content_tokens, cfg.width))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.positions, std=0.02)
        layer = nn.TransformerEncoderLayer(cfg.width, cfg.transformer_heads, cfg.mlp_dim, cfg.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, cfg.transformer_layers, enable_nested_tensor=False)
        # per-dimension input standardisation, fitted on the training set by `dfwatch train fit`
        # (identity until then): pSp codes are dominated by latent_avg, constant across videos
        self.register_buffer("style_mean", torch.zeros(cfg.style_levels, cfg.style_dim))
        self.register_buffer("style_std", torch.ones(cfg.style_levels, cfg.style_dim))
        self.register_buffer("content_mean", torch.zeros(cfg.content_dim))
        self.register_buffer("content_std", torch.ones(cfg.content_dim))
        if cfg.classifier == "two_fc":
            self.classifier = nn.Sequential(nn.Linear(cfg.width, cfg.fc_hidden), nn.ReLU(), nn.Dropout(cfg.dropout),
                                            nn.Linear(cfg.fc_hidden, 1))
        else:
            self.classifier = nn.Sequential(nn.LayerNorm(cfg.width), nn.Linear(cfg.width, 1))

    @torch.no_grad()
    def set_input_stats(self, style: torch.Tensor, content: torch.Tensor, eps: float = 1e-6) -> None:
        """Standardise inputs with training-set statistics: style (N, T, L, D), content (N, C, F)."""
        self.style_mean.copy_(style.mean(dim=(0, 1)))
        self.style_std.copy_(style.std(dim=(0, 1)) + eps)
        self.content_mean.copy_(content.mean(dim=(0, 1)))
        self.content_std.copy_(content.std(dim=(0, 1)) + eps)

    def forward(self, style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
        style = (style.reshape(style.shape[0], style.shape[1], *self.style_mean.shape) - self.style_mean) / self.style_std
        content = (content - self.content_mean) / self.content_std
        style_tokens, _ = self.style_gru(style)
        tokens = self.attention(self.content_proj(content), style_tokens)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        x = self.transformer(torch.cat([cls, tokens], dim=1) + self.positions)
        return self.classifier(x[:, 0]).squeeze(-1)

    def probability(self, style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.forward(style, content))


class StyleGRUProbability(nn.Module):
    """The head as served: (style, content) -> P(fake) (B,). Used for export and the runners."""

    def __init__(self, head: StyleGRUHead):
        super().__init__()
        self.head = head

    def forward(self, style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
        return self.head.probability(style, content)
