"""Posting event webhooks: an httpx client that only connects to allowed addresses.

Every connection resolves its host and checks every address (core.targets) at the
moment it connects, then connects to a checked address; TLS still verifies the
host name. So a name that resolves to a public address when the endpoint is added
and to 127.0.0.1 later (DNS rebinding) is refused at delivery time too. Redirects
are not followed (a 3xx is a failed delivery), proxies from the environment are
not used, and each request has a deadline for every phase and a total one. The
receiver's body is never read: only its status counts.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import typing
from dataclasses import dataclass

import httpcore
import httpx

from outbox import __version__
from outbox.core.targets import Network, TargetRefused, TargetUnresolved, check_addresses

USER_AGENT = f"outbox-webhooks/{__version__}"


@dataclass(frozen=True, slots=True)
class PostResult:
    ok: bool  # the receiver answered 2xx
    status: int | None = None  # its HTTP status, if it answered
    error: str = ""  # why not, in one line


async def resolve_checked(host: str, port: int, allowed: typing.Sequence[Network],
                          timeout: float) -> list[str]:
    """Every address of `host`, all allowed; `TargetRefused` names the first that is
    not, or says the name does not resolve."""
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    else:
        addresses = await _lookup(host, port, timeout)
    check_addresses(host, addresses, allowed)
    return addresses


async def _lookup(host: str, port: int, timeout: float) -> list[str]:
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout)
    except (OSError, TimeoutError) as exc:
        raise TargetUnresolved(f"{host} does not resolve: {exc or 'timed out'}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to checked addresses."""

    def __init__(self, allowed: typing.Sequence[Network]) -> None:
        self._allowed = tuple(allowed)
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        addresses = await resolve_checked(host, port, self._allowed, timeout or 10.0)
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(address, port, timeout, local_address,
                                                     socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: typing.Iterable[httpcore.SOCKET_OPTION]
                                  | None = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks are never posted to a unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class WebhookClient:
    """Posts signed bodies to endpoints, through the guarded backend. The HTTP client is
    made at the first post: its TLS context costs about 0.1 s of CPU to load the CA
    bundle, which a server with no webhook endpoint would pay at every start."""

    def __init__(self, allowed: typing.Sequence[Network], timeout: float,
                 max_connections: int = 32) -> None:
        self.timeout = timeout
        self._allowed = allowed
        self._max_connections = max_connections
        self._made: httpx.AsyncClient | None = None

    @property
    def _client(self) -> httpx.AsyncClient:
        if self._made is None:
            tls = httpx.create_ssl_context(trust_env=False)  # one, for both pools below
            transport = httpx.AsyncHTTPTransport(trust_env=False, verify=tls)
            # httpx does not take a network backend; its pool is replaced by one that has
            # the guard (tests/integration/test_webhooks.py fails if this stops working).
            transport._pool = httpcore.AsyncConnectionPool(
                ssl_context=tls,
                max_connections=self._max_connections,
                max_keepalive_connections=self._max_connections,
                keepalive_expiry=30.0, network_backend=GuardedBackend(self._allowed))
            self._made = httpx.AsyncClient(transport=transport,
                                           timeout=httpx.Timeout(self.timeout),
                                           follow_redirects=False, trust_env=False,
                                           headers={"User-Agent": USER_AGENT})
        return self._made

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> PostResult:
        """POST `body`; never raises for what the network or the receiver did."""
        try:
            async with asyncio.timeout(self.timeout * 2):  # the whole exchange
                return await self._post(url, body, headers)
        except TargetRefused as exc:
            return PostResult(False, error=f"refused: {exc}")
        except TimeoutError:
            return PostResult(False, error=f"no answer within {self.timeout * 2:.0f}s")
        except httpx.HTTPError as exc:
            return PostResult(False, error=_one_line(exc))

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> PostResult:
        async with self._client.stream("POST", url, content=body, headers=headers) as response:
            status = response.status_code
        if 200 <= status < 300:
            return PostResult(True, status)
        return PostResult(False, status, f"the receiver answered HTTP {status}")

    async def aclose(self) -> None:
        if self._made is not None:
            await self._made.aclose()


def _one_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
