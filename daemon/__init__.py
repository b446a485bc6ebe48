"""The daemon, by room (docs/ARCHITECTURE.md): `service/` the processes of `dfwatch run`, `wire/`
what crosses a socket, `outcomes/` what a verdict becomes, `bridges/` and `clients/` who reads
it, `benchmarks/` every measurement, `cli/` the daemon's commands. A room imports only the rooms
below it in that drawing (tests/unit/test_layers.py)."""
