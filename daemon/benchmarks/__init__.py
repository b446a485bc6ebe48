"""Every benchmark behind `dfwatch bench`, and their helpers: `measure` (timers, FLOP counts),
`pipeline` (the CPU pipeline: per-frame cost, window economics, end to end), `soak`, `memory`,
`int8`, `gpu` and `gpu_check` (CUDA), `triton_calls` and `triton_server`. Results go to the
directory the user names (`--out`) or to the cache directory, never into the checkout; footage
comes from engines.footage."""
