"""Waiting for the writer's outcome of a write (`wait: true`).

One core-NATS subscription per api process on `<prefix>.sys.results.<node>.*` (`nexxus.core.subjects`);
each waiting call registers a future under its command id, and the writer
publishes a WriteResult on the command's `reply_subject`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from google.protobuf.message import DecodeError

from nexxus.core.ports import BusMessage, BusSubscription, MessageBus
from nexxus.v1.internal_pb2 import WriteResult

log = logging.getLogger("nexxus.api.results")


class WriteResults:
    def __init__(self, bus: MessageBus, node_id: str) -> None:
        self._bus = bus
        self._node_id = node_id
        self._waiting: dict[str, asyncio.Future[WriteResult]] = {}
        self._sub: BusSubscription | None = None

    def reply_subject(self, command_id: str) -> str:
        return self._bus.subjects.result(self._node_id, command_id)

    async def start(self) -> None:
        self._sub = await self._bus.subscribe(self._bus.subjects.results(self._node_id), self._on_result)

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None
        for fut in self._waiting.values():
            fut.cancel()
        self._waiting.clear()

    def expect(self, command_id: str) -> asyncio.Future[WriteResult]:
        """Register before publishing the command, so a fast writer cannot be missed."""
        fut: asyncio.Future[WriteResult] = asyncio.get_running_loop().create_future()
        self._waiting[command_id] = fut
        return fut

    async def wait(
        self, command_id: str, fut: asyncio.Future[WriteResult], timeout: float
    ) -> WriteResult | None:
        """The result, or None when the writer has not answered within `timeout`."""
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return None
        finally:
            self._waiting.pop(command_id, None)

    def forget(self, command_id: str) -> None:
        fut = self._waiting.pop(command_id, None)
        if fut is not None:
            fut.cancel()

    async def _on_result(self, msg: BusMessage) -> None:
        result = WriteResult()
        try:
            result.ParseFromString(msg.data)
        except DecodeError:
            log.warning("dropping malformed write result on %s", msg.subject)
            return
        fut = self._waiting.get(result.command_id)
        if fut is not None and not fut.done():
            with contextlib.suppress(asyncio.InvalidStateError):
                fut.set_result(result)
