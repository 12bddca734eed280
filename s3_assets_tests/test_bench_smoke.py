"""The benchmark harness itself, at tiny sizes through the latency proxy at 0 and 20 ms
(the benchmark proper is not part of the suite, and nothing here asserts a speed)."""

from __future__ import annotations

import importlib.util
import json
import re
import socket
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_smoke_run_writes_measured_tables(tmp_path):
    report = load_bench().main(["--smoke", "--rtts", "0", "20", "--out", str(tmp_path)]).read_text()
    raw = json.loads((tmp_path / "bench_results.json").read_text())
    assert set(raw["scenarios"]) == {"listing 120 objects (flat)", "listing 120 objects (date-partitioned)",
                                     "loading 5 small CSVs", "loading one 1 MB CSV", "deleting 50 objects"}
    for by_rtt in raw["scenarios"].values():
        assert set(by_rtt) == {"0", "20"}
        for results in by_rtt.values():
            assert results["s3-assets (this project)" if "s3-assets (this project)" in results
                           else "s3-assets (this project): pyarrow.fs.S3FileSystem"] > 0
    for rtt in ("0", "20"):
        assert f"### {rtt} ms round trip" in report
    assert re.search(r"\| loading 5 small CSVs at 20 ms: ≥ 25 × faster than the notebook's loop \| [0-9.]+ × faster \|",
                     report)
    assert re.search(r"\| whole graph on the CLI at 0 ms: ≤ 3 × a plain script \| [0-9.]+ × \|", report)
    assert re.search(r"\| change sensor over 120 objects at 20 ms: every tick < 30 s \| longest [0-9.]+ s \|", report)
    assert raw["sensor"]["20"]["objects"] == 120 and raw["sensor"]["20"]["baseline_ticks"] >= 1
    assert raw["memory"]["loading one 1 MB CSV"]["peak_kb"] >= raw["memory"]["loading one 1 MB CSV"]["baseline_kb"]


def test_latency_proxy_delays_each_direction_without_holding_data(tmp_path):
    """Bytes pass unchanged and in order; a reply cannot come back before one round trip."""
    sys.path.insert(0, str(ROOT / "bench"))
    from harness.server import LatencyProxy

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    received = bytearray()

    def echo():
        connection, _ = server.accept()
        with connection:
            while data := connection.recv(65536):
                received.extend(data)
                connection.sendall(data)

    threading.Thread(target=echo, daemon=True).start()
    proxy = LatencyProxy(port, rtt_ms=200)
    try:
        payload = bytes(range(256)) * 4096  # 1 MiB: many chunks
        start = time.monotonic()  # before connecting: the proxy charges the handshake's round trip
        with socket.create_connection(("127.0.0.1", proxy.port)) as client:
            client.sendall(payload[:10])
            first = client.recv(10)
            elapsed = time.monotonic() - start
            client.sendall(payload[10:])
            echoed = bytearray(first)
            while len(echoed) < len(payload):
                echoed.extend(client.recv(65536))
    finally:
        proxy.stop()
        server.close()
    assert bytes(echoed) == payload and bytes(received) == payload
    assert elapsed >= 0.2 * 2  # the handshake's round trip, then the request's own
