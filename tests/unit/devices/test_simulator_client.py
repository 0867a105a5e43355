"""The simulator's KeepAliveClient against a small scripted HTTP server: answers, problem
documents, chunked bodies, and a kept-alive connection the server closed meanwhile."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from spillguard.devices.agent.client import CredentialRevoked, ServerUnreachable
from spillguard.devices.simulator import KeepAliveClient

Reply = Callable[[bytes], bytes]
T = TypeVar("T")


def answer(status: int, body: dict[str, Any], *, content_type: str = "application/json") -> bytes:
    payload = json.dumps(body).encode()
    return (
        f"HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\n"
        f"content-length: {len(payload)}\r\n\r\n"
    ).encode() + payload


async def serve(reply: Reply, *, close_after: int | None = None) -> tuple[asyncio.Server, list]:
    """A server answering each request with ``reply(request_body)``; it closes a connection
    after ``close_after`` answers (an idle time-out, from the client's point of view)."""
    seen: list[tuple[int, bytes, bytes]] = []
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        number, answered = connections, 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                body = await reader.readexactly(length)
                seen.append((number, head, body))
                writer.write(reply(body))
                await writer.drain()
                answered += 1
                if close_after is not None and answered >= close_after:
                    break
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, seen


def in_fresh_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run on a loop of its own in another thread (a browser test in the same worker may
    leave this thread's loop running)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def root(server: asyncio.Server) -> str:
    port = server.sockets[0].getsockname()[1]
    return f"http://127.0.0.1:{port}/api/device/v1"


def test_check_in_sends_the_credential_and_parses_the_answer() -> None:
    async def run() -> tuple[dict[str, Any], list]:
        server, seen = await serve(lambda body: answer(200, {"echo": json.loads(body)}))
        client = KeepAliveClient(root(server), connections=2, timeout=5)
        try:
            first = await client.checkin(7, "sgd_secret", {"platform": "ios"})
            await client.checkin(7, "sgd_secret", {"platform": "android"})
        finally:
            await client.aclose()
            server.close()
        return first, seen

    first, seen = in_fresh_loop(run())
    assert first == {"echo": {"posture": {"platform": "ios"}}}
    assert [number for number, _, _ in seen] == [1, 1], "the connection is kept alive"
    head = seen[0][1]
    assert head.startswith(b"POST /api/device/v1/checkin HTTP/1.1\r\n")
    assert b"Authorization: Device 7.sgd_secret\r\n" in head


def test_a_problem_document_becomes_the_agents_error() -> None:
    problem = {
        "type": "https://spillguard.dev/problems/device-credential-revoked",
        "title": "Device credential revoked",
        "status": 401,
        "detail": "The device was wiped; its credential no longer works.",
        "state": "wiped",
    }

    async def run() -> None:
        server, _ = await serve(
            lambda body: answer(401, problem, content_type="application/problem+json")
        )
        client = KeepAliveClient(root(server), connections=1, timeout=5)
        try:
            await client.checkin(7, "sgd_secret", {})
        finally:
            await client.aclose()
            server.close()

    with pytest.raises(CredentialRevoked) as caught:
        in_fresh_loop(run())
    assert caught.value.status == 401 and caught.value.slug == "device-credential-revoked"


def test_a_connection_closed_while_idle_is_reopened_and_the_request_sent_again() -> None:
    async def run() -> list:
        server, seen = await serve(lambda body: answer(200, {"ok": True}), close_after=1)
        client = KeepAliveClient(root(server), connections=1, timeout=5)
        try:
            for _ in range(3):
                assert await client.report_result(1, "sgd_x", 5, {"status": "acknowledged"}) == {
                    "ok": True
                }
                await asyncio.sleep(0.05)  # let the server's close arrive
        finally:
            await client.aclose()
            server.close()
        return seen

    seen = in_fresh_loop(run())
    assert [number for number, _, _ in seen] == [1, 2, 3]


def test_a_chunked_answer_is_read_whole() -> None:
    payload = json.dumps(
        {
            "device_id": 3,
            "credential": "sgd_c",
            "checkin_interval_seconds": 60,
            "server_time": "2026-11-23T10:00:00Z",
        }
    ).encode()
    chunked = (
        b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\n"
        b"transfer-encoding: chunked\r\n\r\n"
        + f"{10:x}\r\n".encode()
        + payload[:10]
        + b"\r\n"
        + f"{len(payload) - 10:x}\r\n".encode()
        + payload[10:]
        + b"\r\n0\r\n\r\n"
    )

    async def run() -> Any:
        server, _ = await serve(lambda body: chunked)
        client = KeepAliveClient(root(server), connections=1, timeout=5)
        try:
            return await client.enroll("sge_token", {"name": "P", "platform": "ios"})
        finally:
            await client.aclose()
            server.close()

    enrolled = in_fresh_loop(run())
    assert (enrolled.device_id, enrolled.credential) == (3, "sgd_c")


def test_no_server_is_server_unreachable() -> None:
    async def run() -> None:
        server, _ = await serve(lambda body: b"")
        url = root(server)
        server.close()
        await server.wait_closed()
        client = KeepAliveClient(url, connections=1, timeout=5)
        await client.checkin(1, "sgd_x", {})

    with pytest.raises(ServerUnreachable):
        in_fresh_loop(run())


def test_only_plain_http() -> None:
    with pytest.raises(ValueError, match="plain http"):
        KeepAliveClient("https://mdm.example.com/api/device/v1", connections=1, timeout=5)
