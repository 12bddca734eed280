"""A TCP proxy on loopback that puts a fixed distance between a client and a server.

Every chunk is delivered a fixed one-way time after it arrived, in each direction, and a new
connection costs one round trip before its first bytes arrive (the TCP handshake a real
connection pays). Chunks are not held back by each other: the delay adds latency, never a
bandwidth limit. netem would do this in the kernel; it is not available here.

    python bench/harness/latency_proxy.py --upstream 127.0.0.1:8333 --rtt-ms 20
    # prints "listening <port>" on stdout, then serves until killed
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

CHUNK = 256 * 1024
readers: set[asyncio.Task] = set()  # strong references to the reading halves


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float, not_before: float) -> None:
    """Copy reader -> writer, each chunk delayed by `delay` after it arrived."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def read() -> None:
        while True:
            try:
                data = await reader.read(CHUNK)
            except (ConnectionError, OSError):
                data = b""
            queue.put_nowait((max(loop.time() + delay, not_before), data))
            if not data:
                return

    reading = asyncio.create_task(read())
    readers.add(reading)
    reading.add_done_callback(readers.discard)
    try:
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                with contextlib.suppress(OSError, RuntimeError):
                    if writer.can_write_eof():
                        writer.write_eof()
                return
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        return
    finally:
        reading.cancel()


async def serve(upstream_host: str, upstream_port: int, rtt: float, port: int = 0) -> asyncio.Server:
    one_way = rtt / 2
    running: set[asyncio.Task] = set()  # strong references: asyncio keeps only weak ones

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        accepted = loop.time()
        task = asyncio.current_task()
        if task is not None:
            running.add(task)
            task.add_done_callback(running.discard)
        try:
            server_reader, server_writer = await asyncio.open_connection(upstream_host, upstream_port)
        except OSError:
            client_writer.close()
            return
        for writer in (client_writer, server_writer):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                import socket

                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # The request cannot reach the server before the handshake's round trip and its own way.
        upstream = pump(client_reader, server_writer, one_way, accepted + rtt + one_way)
        downstream = pump(server_reader, client_writer, one_way, 0.0)
        await asyncio.gather(upstream, downstream, return_exceptions=True)
        for writer in (client_writer, server_writer):
            with contextlib.suppress(Exception):
                writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="host:port of the server")
    parser.add_argument("--rtt-ms", type=float, required=True, help="round trip added, in milliseconds")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    host, _, port = args.upstream.rpartition(":")
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

    async def run() -> None:
        server = await serve(host, int(port), args.rtt_ms / 1000, args.port)
        print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
        async with server:
            await server.serve_forever()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
