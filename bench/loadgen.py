"""A light HTTP/1.1 load generator: one asyncio loop, one keep-alive connection per client.

The benchmarks share two cores with the server they measure, so the load generator's
own cost shows up in every number. 50 httpx clients in 50 threads cost ~2 ms of CPU
per request and add their own tail (threads waiting for the GIL to read an answer
that has arrived); this one sends prebuilt requests and reads answers by their
Content-Length, at a few tens of microseconds per request. It speaks only what
gunicorn answers our API with: HTTP/1.1, Content-Length bodies, keep-alive.
"""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlsplit


class LoadError(RuntimeError):
    pass


def build_request(url: str, method: str, path: str, headers: dict[str, str], body: dict | None = None) -> bytes:
    host = urlsplit(url).netloc
    payload = json.dumps(body).encode() if body is not None else b""
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: {host}",
        "Connection: keep-alive",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


async def _client(
    url: str, request: bytes, starts: list[float] | None, count: int, ok: tuple[int, ...], latencies: list[float]
) -> None:
    """Sends `count` requests: at the given start times (open loop), else back to back."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    loop = asyncio.get_running_loop()
    try:
        for i in range(count):
            if starts is not None:
                delay = starts[i] - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            t0 = time.perf_counter()
            status = await _exchange(reader, writer, request)
            latencies.append((time.perf_counter() - t0) * 1000)
            if status not in ok:
                raise LoadError(f"answered {status}")
    finally:
        writer.close()


def closed_loop(
    url: str, request: bytes, clients: int, requests: int, ok: tuple[int, ...] = (200, 202)
) -> tuple[list[float], float]:
    """Each client sends its next request as soon as the last one was answered; (latencies ms, seconds)."""
    latencies: list[float] = []

    async def main() -> float:
        t0 = time.perf_counter()
        await asyncio.gather(*(_client(url, request, None, requests // clients, ok, latencies) for _ in range(clients)))
        return time.perf_counter() - t0

    return latencies, asyncio.run(main())


def open_loop(
    url: str, request: bytes, clients: int, rate_per_client: float, seconds: float, ok: tuple[int, ...] = (200, 202)
) -> list[float]:
    """Each client sends at its own fixed rate, whatever the answers (users, not a hammer);
    the clients' schedules are spread evenly over one interval. Latencies in ms."""
    latencies: list[float] = []
    interval = 1 / rate_per_client
    count = int(seconds * rate_per_client)

    async def main() -> None:
        begin = asyncio.get_running_loop().time() + 0.2
        await asyncio.gather(
            *(
                _client(
                    url,
                    request,
                    [begin + c * interval / clients + i * interval for i in range(count)],
                    count,
                    ok,
                    latencies,
                )
                for c in range(clients)
            )
        )

    asyncio.run(main())
    return latencies
