"""NVIDIA Triton Inference Server: a bundle's parts served by Triton (repository.py), the bundled
server started locally (server.py). The daemon's client is engines/backends/triton_runner.py;
how it addresses a server and names the models (engines/backends/triton_naming.py) is the one
thing both sides share, so this folder imports backends and never the other way round."""
