"""The published architectures with the official state-dict keys: pSp encoder, slow_r50, StyleGRU head, DLDFD."""
