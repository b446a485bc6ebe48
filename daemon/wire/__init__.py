"""The wire: what crosses a ZeroMQ socket. `protocol` (typed, validating, torch-free messages,
the per-stream status included), `subscriber` (the one PUB decoder every client uses), `curve`
(CURVE keys for tcp endpoints) and `endpoints` (where the sockets are, and the daemon's lock)."""
