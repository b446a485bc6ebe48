"""The Triton backend: a bundle's parts run by an NVIDIA Triton Inference Server (gRPC or HTTP).

`open_triton_runners` checks, before the daemon serves, that the server is live, that every part
of the bundle is loaded there (`engines/triton/repository.py` names them `<family>.<part>`) and
that each model carries the same ONNX checksum as the local manifest: one line otherwise, naming
the part and both checksums. A call has a timeout; a failed call raises, which the inference
loop counts as `model_error` for the streams involved, and the next call tries the server again,
so a restarted server is picked up without restarting the daemon.
"""
from __future__ import annotations

import json

import numpy as np

from engines.backends.base import Runner, as_numpy
from engines.bundles.bundle import Bundle
from engines.errors import BundleError
from engines.backends.triton_naming import model_name, parse_url

DEFAULT_URL = "grpc://127.0.0.1:8001"


class TritonError(BundleError):
    """The model server serves something else, or (TritonUnreachable) is not up."""


class TritonUnreachable(TritonError):
    transient = True             # a server may come up later: the supervisor restarts the process


def client_for(url: str, timeout_s: float):
    """A tritonclient for grpc://HOST:PORT (default) or http://HOST:PORT."""
    scheme, host, port = parse_url(url)
    target = f"{host}:{port}"
    if scheme == "grpc":
        import tritonclient.grpc as module

        return module, module.InferenceServerClient(target)
    import tritonclient.http as module

    return module, module.InferenceServerClient(target, connection_timeout=timeout_s, network_timeout=timeout_s)


class TritonRunner(Runner):
    backend = "triton"

    def __init__(self, part: str, model: str, inputs: tuple[str, ...], output: str, item_dims: list[int],
                 client_module, client, timeout_s: float):
        self.part, self.model, self.inputs, self.output, self.item_dims = part, model, inputs, output, item_dims
        self.module, self.client, self.timeout_s = client_module, client, timeout_s

    def run(self, *inputs) -> np.ndarray:
        tensors = []
        for name, x in zip(self.inputs, inputs):
            array = as_numpy(x)
            tensor = self.module.InferInput(name, list(array.shape), "FP32")
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        wanted = [self.module.InferRequestedOutput(self.output)]
        kwargs = {"client_timeout": self.timeout_s} if self.module.__name__.endswith("grpc") else {}
        result = self.client.infer(self.model, tensors, outputs=wanted, **kwargs)
        out = result.as_numpy(self.output).astype(np.float32, copy=False)
        return out.reshape(out.shape[0], *self.item_dims)


def served_parameters(client, model: str) -> dict[str, str]:
    """The parameters of a served model's config.pbtxt (dfwatch_onnx_sha256, ...)."""
    if "grpc" in type(client).__module__:
        config = client.get_model_config(model, as_json=True)["config"]
    else:
        config = client.get_model_config(model)
    return {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}


def wait_until_ready(client, url: str, bundle: Bundle, wait_s: float) -> None:
    """Waits up to `wait_s` for a live, ready server (one started with the daemon needs seconds)."""
    import time

    from engines.logs import get_logger

    deadline, told, error = time.monotonic() + wait_s, False, "not ready"
    while True:
        try:
            if client.is_server_ready():
                return
        except Exception as e:  # tritonclient's InferenceServerException for a refused connection
            error = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        if time.monotonic() >= deadline:
            raise TritonUnreachable(f"no ready Triton server at {url} after {wait_s:g} s ({error}): start one with "
                              f"'dfwatch serve-models {bundle.root}', or set triton.url")
        if not told:
            get_logger().info("waiting for the model server", url=url, wait_s=wait_s)
            told = True
        time.sleep(0.5)


def open_triton_runners(bundle: Bundle, url: str, timeout_s: float, wait_s: float = 60.0) -> dict[str, Runner]:
    module, client = client_for(url, timeout_s)
    wait_until_ready(client, url, bundle, wait_s)
    runners = {}
    for part in bundle.spec.parts:
        name = model_name(bundle, part.name)
        if not client.is_model_ready(name):
            raise TritonError(f"part {part.name}: model {name} is not loaded on the Triton server at {url}; load "
                              f"the repository of 'dfwatch engines triton-repo {bundle.root}'")
        expected = bundle.manifest.onnx[part.name].sha256
        params = served_parameters(client, name)
        found = params.get("dfwatch_onnx_sha256")
        if found != expected:
            raise TritonError(f"part {part.name}: the Triton server at {url} serves {name} with ONNX sha256 "
                              f"{(found or 'none')[:16]}..., this bundle's is {expected[:16]}...: it serves another "
                              f"bundle; load this one's repository ('dfwatch engines triton-repo {bundle.root}')")
        dims = [-1 if d < 0 else d for d in json.loads(params.get("dfwatch_output_dims", "[]"))]
        runners[part.name] = TritonRunner(part.name, name, part.inputs, part.outputs[0], dims, module, client,
                                          timeout_s)
    return runners
