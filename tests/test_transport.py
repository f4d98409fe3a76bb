"""The HTTP transport against raw servers on loopback that answer exactly as each test needs: kept-alive
connections, a connection the server closed while idle, bodies framed every way HTTP allows, TLS."""

from __future__ import annotations

import asyncio
import gzip
import shutil
import ssl
import subprocess

import pytest

from personagym.llm.providers import transport
from personagym.llm.providers.base import http_errors
from personagym.llm.providers.transport import Broken, ConnectFailed, Session
from personagym.llm.types import Cause, ProviderError


class RawServer:
    """An asyncio server on loopback; `reply(request_head) -> bytes` answers each request, on the same
    connection until `close_after` says otherwise. Counts connections and requests."""

    def __init__(self, reply, close_after=None, idle_close: float | None = None, tls=None):
        self.reply, self.close_after, self.idle_close, self.tls = reply, close_after, idle_close, tls
        self.connections = self.requests = 0
        self.heads: list[bytes] = []

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]
        self.url = f"{'https' if self.tls else 'http'}://{'localhost' if self.tls else '127.0.0.1'}:{self.port}/v1/chat"
        return self

    async def __aexit__(self, *exc):
        self.server.close()

    async def _serve(self, reader, writer):
        self.connections += 1
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.idle_close)
                except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
                    return
                length = int(next((line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), b"0"))
                await reader.readexactly(length)
                self.requests += 1
                self.heads.append(head)
                answer = self.reply(head)
                if answer:
                    writer.write(answer)
                    await writer.drain()
                if self.close_after and self.close_after(self.requests):
                    return
        finally:
            writer.close()


def ok(body: bytes = b'{"ok": true}', extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + extra + b"Content-Length: %d\r\n\r\n" % len(body) + body


async def post(session: Session, url: str, body: bytes = b'{"q": 1}', headers=None):
    return await session.exchange("POST", url, headers or {"Authorization": "Bearer sk-test"}, body)


async def test_connections_are_kept_alive_and_reused():
    async with RawServer(lambda head: ok()) as server:
        session = Session()
        for _ in range(5):
            assert await post(session, server.url) == (200, {"content-type": "application/json", "content-length": "12"}, b'{"ok": true}')
        await asyncio.gather(*(post(session, server.url) for _ in range(3)))
        await session.aclose()
    assert server.requests == 8
    assert server.connections == 3  # one for the five in turn, two more for three at once


async def test_sessions_on_one_loop_share_their_servers_connections_until_the_last_closes():
    # Two models at one server (two providers, two sessions): one connection, not one each.
    async with RawServer(lambda head: ok()) as server:
        judge, agent = Session(), Session()
        for session in (judge, agent, judge, agent):
            assert (await post(session, server.url))[0] == 200
        assert server.connections == 1
        await judge.aclose()
        assert (await post(agent, server.url))[0] == 200  # the other's close leaves it open
        pool = agent._pool
        await agent.aclose()
        assert not pool.idle and asyncio.get_running_loop() not in transport._pools
    assert server.connections == 1


async def test_a_connection_the_server_closed_while_idle_is_replaced_without_an_error():
    async with RawServer(lambda head: ok(), idle_close=0.05) as server:
        session = Session()
        await post(session, server.url)
        await asyncio.sleep(0.2)  # the server closes the kept-alive connection meanwhile
        assert (await post(session, server.url))[0] == 200
        await session.aclose()
    assert server.connections == 2 and server.requests == 2


async def test_a_kept_alive_connection_closed_as_the_request_goes_is_sent_again_on_a_new_one():
    # The server reads the second request on a connection and closes it without a byte: the kind of
    # race a keep-alive timeout makes. The request is sent once more, on a fresh connection.
    async with RawServer(lambda head: ok() if server.requests != 2 else b"", close_after=lambda n: n == 2) as server:
        session = Session()
        first = await post(session, server.url)
        second = await post(session, server.url)  # read, then the connection closed: sent again
        await session.aclose()
    assert first[0] == second[0] == 200
    assert server.requests == 3 and server.connections == 2


async def test_a_new_connection_closed_without_a_reply_is_a_broken_exchange_not_retried_forever():
    async with RawServer(lambda head: b"", close_after=lambda n: True) as server:
        session = Session()
        with pytest.raises(Broken, match="closed the connection before replying"):
            await post(session, server.url)
        await session.aclose()
    assert server.requests == 1


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\n\r\nhello world",  # ends when the connection does
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world",
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(gzip.compress(b"hello world"))
        + gzip.compress(b"hello world"),
    ],
    ids=["chunked", "until-close", "interim-100", "gzip"],
)
async def test_every_framing_of_a_body_is_read_whole(reply):
    async with RawServer(lambda head: reply, close_after=lambda n: b"HTTP/1.0" in reply) as server:
        session = Session()
        status, headers, body = await post(session, server.url)
        await session.aclose()
    assert (status, body) == (200, b"hello world")
    assert "content-encoding" not in headers  # undone, so nobody decodes it twice
    assert b"Accept-Encoding: gzip, deflate" in server.heads[0]


@pytest.mark.parametrize(
    "reply, problem",
    [
        (b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 3\r\n\r\nabc", "encoding not asked for"),
        (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 9\r\n\r\nnot gzip!", "encoding is broken"),
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\nContent-Length: 0\r\n\r\n", "headers pass"),
        (b"SMTP ready\r\n\r\n", "not an HTTP reply"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", "before the reply ended"),
    ],
    ids=["brotli-unasked", "bad-gzip", "huge-headers", "not-http", "cut-short"],
)
async def test_a_broken_reply_is_a_broken_exchange_and_a_connection_cause(reply, problem):
    async with RawServer(lambda head: reply, close_after=lambda n: True) as server:
        session = Session()
        with pytest.raises(Broken, match=problem):
            await post(session, server.url)
        with pytest.raises(ProviderError) as info, http_errors("the server"):
            await post(session, server.url)
        await session.aclose()
    assert info.value.cause is Cause.CONNECTION and "broke" in info.value.detail


async def test_a_header_with_a_line_break_is_never_sent():
    async with RawServer(lambda head: ok()) as server:
        session = Session()
        with pytest.raises(Broken, match="line break"):
            await post(session, server.url, headers={"OpenAI-Project": "p\r\nX-Forged: yes"})
        with pytest.raises(Broken, match="Latin-1"):
            await post(session, server.url, headers={"OpenAI-Project": "projet-été-東京"})
        await session.aclose()
    assert server.requests == 0


async def test_a_second_reply_in_the_same_bytes_leaves_the_first_alone_and_the_connection_closed():
    second = b"HTTP/1.1 200 OK\r\nX-Ratelimit-Limit-Requests: 1\r\nContent-Length: 2\r\n\r\nno"
    async with RawServer(lambda head: ok() + second) as server:
        session = Session()
        status, headers, body = await post(session, server.url)
        assert (status, body) == (200, b'{"ok": true}') and "x-ratelimit-limit-requests" not in headers
        assert (await post(session, server.url))[0] == 200
        await session.aclose()
    assert server.connections == 2  # the first was not reused


async def test_a_port_nobody_listens_on_cannot_be_reached():
    async with RawServer(lambda head: ok()) as server:
        url = server.url
    session = Session()
    with pytest.raises(ProviderError) as info, http_errors("the server"):
        await post(session, url)
    assert info.value.cause is Cause.CONNECTION and "cannot reach" in info.value.detail


async def test_a_cancelled_exchange_closes_its_connection():
    async with RawServer(lambda head: b"") as server:  # never answers
        session = Session()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(post(session, server.url), 0.1)
        assert not session._open and not any(session._pool.idle.values())
        server.reply = lambda head: ok()
        assert (await post(session, server.url))[0] == 200  # on a new connection
        await session.aclose()
    assert server.connections == 2


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make a test certificate (apt-get install openssl)")
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", folder / "key.pem", "-out",
         folder / "cert.pem", "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
        check=True, capture_output=True,
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return server, folder / "cert.pem"


async def test_tls_is_verified_against_the_systems_certificates(certificate):
    server_context, _ = certificate
    async with RawServer(lambda head: ok(), tls=server_context) as server:
        session = Session()
        with pytest.raises(ConnectFailed, match="CERTIFICATE_VERIFY_FAILED"):
            await post(session, server.url)  # self-signed: not trusted
        await session.aclose()
    assert server.requests == 0


async def test_tls_to_a_trusted_server_works_with_its_host_name(certificate, monkeypatch):
    server_context, cert = certificate
    trusting = ssl.create_default_context(cafile=str(cert))
    monkeypatch.setattr(transport, "_tls", lambda: trusting)
    async with RawServer(lambda head: ok(), tls=server_context) as server:
        session = Session()
        assert (await post(session, server.url))[0] == 200
        assert (await post(session, server.url))[0] == 200
        await session.aclose()
    assert server.connections == 1
    assert b"Host: localhost:%d" % server.port in server.heads[0]
