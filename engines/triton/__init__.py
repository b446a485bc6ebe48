"""NVIDIA Triton Inference Server: a bundle's parts served by Triton (repository.py), the bundled
server started locally (server.py); the daemon's client is engines/backends/triton_runner.py."""
