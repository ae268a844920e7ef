"""bench --rpc against a TVM RPC server started on the loopback address."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
sys.path.insert(0, __import__("os").path.join(__import__("os").path.dirname(__file__), "..", "cli"))
import time

import pytest
from click.testing import CliRunner

pytestmark = pytest.mark.tvm


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def rpc_server():
    pytest.importorskip("cloudpickle")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tvm.exec.rpc_server", "--host", "127.0.0.1", "--port",
                             str(port), "--port-end", str(port + 1)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.3)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


def test_bench_over_rpc(rpc_server, tmp_path) -> None:
    from test_compile_cli import mlp_file

    from sparseforge.cli import main

    result = CliRunner().invoke(main, ["bench", str(mlp_file(tmp_path)), "--target", "x86", "--rpc", rpc_server,
                                       "--rounds", "2", "--repeat", "3", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert [r["engine"] for r in doc["results"]] == ["sparseforge-dense", "sparseforge-sparse"]
    assert all(r["median_ms"] > 0 and "remote" in r["note"] for r in doc["results"])


def test_unreachable_rpc_server_is_one_clear_error(tmp_path) -> None:
    from test_compile_cli import mlp_file

    from sparseforge.cli import main

    result = CliRunner().invoke(main, ["bench", str(mlp_file(tmp_path)), "--target", "arm", "--rpc",
                                       f"127.0.0.1:{_free_port()}"])
    assert result.exit_code == 2 and "cannot reach the RPC server" in result.output
    result = CliRunner().invoke(main, ["bench", str(mlp_file(tmp_path)), "--target", "arm"])
    assert result.exit_code == 2 and "--rpc" in result.output
