"""Benchmark compiled artifacts on a remote device through TVM's RPC server or tracker.

``HOST:PORT`` names either an RPC server (``python -m tvm.exec.rpc_server`` on the board) or, with a device key,
a tracker (``python -m tvm.exec.rpc_tracker`` plus servers registered with ``--tracker``/``--key``). The artifact's
library is uploaded, loaded remotely, and ``main`` is timed there with TVM's ``time_evaluator``.
"""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import numpy as np

from sparseforge.errors import SparseforgeError


@dataclasses.dataclass
class RemoteTiming:
    median_ms: float
    runs_ms: list[float]
    device: str


def parse_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise SparseforgeError(f"bad --rpc address '{address}'", hint="write HOST:PORT, e.g. 192.168.1.20:9090")
    return host, int(port)


def connect(address: str, key: str | None = None, timeout: int = 10):
    """An RPC session to a server (no key) or to a device of kind ``key`` through a tracker."""
    from sparseforge.codegen import _tvm

    host, port = parse_address(address)
    rpc = _tvm.tvm.rpc
    try:
        if key:
            return rpc.connect_tracker(host, port).request(key, session_timeout=600)
        return rpc.connect(host, port, session_timeout=600)
    except Exception as exc:
        raise SparseforgeError(f"cannot reach the RPC {'tracker' if key else 'server'} at {address}: "
                               f"{str(exc).strip().splitlines()[-1][:200]}",
                               hint="start one on the device: python -m tvm.exec.rpc_server --host 0.0.0.0 "
                                    "--port 9090") from None


def time_remote(session, library: Path, inputs: list[np.ndarray], *, number: int = 10, repeat: int = 5
                ) -> RemoteTiming:
    """Upload ``library`` (a Relax VM shared library built for the device), run ``main`` remotely, time it."""
    from sparseforge.codegen.vm import VMRunner  # TVM is optional

    remote_name = f"sf_{uuid.uuid4().hex[:12]}.so"  # a new name per upload: dlopen caches by path
    session.upload(str(library), target=remote_name)
    module = session.load_module(remote_name)
    dev = session.cpu()
    runner = VMRunner(module, dev)
    runner.run_tensors(runner.to_device(inputs))  # warm up, and fail early with the device's error
    runs = [s * 1e3 for s in runner.time_evaluator(inputs, number=number, repeat=repeat)]
    return RemoteTiming(float(np.median(runs)), runs, str(dev))
