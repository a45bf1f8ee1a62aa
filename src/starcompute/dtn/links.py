"""How an agent reaches a neighbour: it asks its radio (the link emulator) for the link.

The emulator speaks one line before the bytes of a link: the dialling node writes
``LINK <from> <to>`` and reads ``UP`` (the emulator has connected it to the neighbour;
from here on every byte crosses the emulated link, delayed and rate-shaped) or
``DOWN <reason>`` (no link now). ``STATUS`` instead asks for a JSON report.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from starcompute.errors import LinkDownError

LINE_LIMIT = 256


class Links(Protocol):
    async def dial(
        self, me: str, neighbour: str
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]: ...


class EmulatedLinks:
    """Links through the link emulator at ``host:port``."""

    def __init__(self, host: str, port: int, timeout_s: float = 10.0) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s

    async def dial(
        self, me: str, neighbour: str
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, limit=2**20), self.timeout_s
            )
        except (OSError, TimeoutError) as exc:
            raise LinkDownError(
                f"link emulator at {self.host}:{self.port} unreachable: {exc}"
            ) from None
        try:
            writer.write(f"LINK {me} {neighbour}\n".encode())
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), self.timeout_s)
        except (OSError, TimeoutError) as exc:
            writer.close()
            raise LinkDownError(f"link emulator did not answer: {exc!r}") from None
        answer = line.decode("ascii", "replace").strip()
        if answer != "UP":
            with contextlib.suppress(OSError):
                writer.close()
            raise LinkDownError(f"{me} -> {neighbour}: {answer or 'connection closed'}")
        return reader, writer


async def read_command(reader: asyncio.StreamReader) -> list[str]:
    """The emulator's side: the first line of a connection, split in words."""
    line = await reader.readuntil(b"\n")
    if len(line) > LINE_LIMIT:
        return []
    return line.decode("ascii", "replace").split()
