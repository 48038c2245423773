"""A TCP relay for outage tests: put it between a process and PostgreSQL (or Redis), then
cut it (every relayed connection dropped, new ones refused) and mend it, as a network or a
server going away and coming back would.

It also keeps what each side wrote, chunk by chunk (``from_client``, ``to_client``), and
with ``coalesce`` holds the server's bytes until it has been quiet that long, then passes
them on in one write (a server that buffers its replies)."""

from __future__ import annotations

import asyncio
import contextlib


class Relay:
    def __init__(self, target_host: str, target_port: int, *, coalesce: float = 0.0) -> None:
        self.target = (target_host, target_port)
        self.coalesce = coalesce
        self.from_client: list[bytes] = []
        self.to_client: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Drop every relayed connection and refuse new ones."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._pipes):
            writer.transport.abort()
        self._pipes.clear()

    async def mend(self) -> None:
        await self.start()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._pipes.update({writer, up_writer})
        await asyncio.gather(
            self._pipe(reader, up_writer, self.from_client, 0.0),
            self._pipe(up_reader, writer, self.to_client, self.coalesce),
            return_exceptions=True,
        )

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        log: list[bytes],
        hold: float,
    ) -> None:
        try:
            while data := await reader.read(65536):
                if hold:
                    with contextlib.suppress(TimeoutError):
                        while more := await asyncio.wait_for(reader.read(65536), hold):
                            data += more
                log.append(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._pipes.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()
