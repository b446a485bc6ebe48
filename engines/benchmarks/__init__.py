"""Measuring helpers (timers, FLOP counts) and the GPU benchmarks behind `dfwatch bench --device cuda`."""
