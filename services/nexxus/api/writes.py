"""Queueing model writes: build the WriteCommand, publish it on its partition, optionally wait."""

from __future__ import annotations

import asyncio
import logging
import time

from nexxus.api.context import ApiContext
from nexxus.auth.caller import Caller
from nexxus.core.errors import NexxusError, error_from_code
from nexxus.core.metrics import WRITES_ACCEPTED
from nexxus.core.operations import new_operation_id
from nexxus.core.partitions import write_partition
from nexxus.core.tracing import sampled_context, start_span, traceparent_of
from nexxus.core.writes import op_name
from nexxus.v1 import common_pb2, objects_pb2
from nexxus.v1.internal_pb2 import WRITE_OP_BARRIER, WriteCommand, WriteResult

log = logging.getLogger("nexxus.api.writes")


def new_command_id(ctx: ApiContext, app_id: str) -> str:
    """A command (= operation, event) id that GetOperation recognizes as issued here."""
    return new_operation_id(app_id, ctx.settings.auth.signing_key)


def actor_of(caller: Caller) -> common_pb2.Actor:
    return common_pb2.Actor(user_id=caller.user_id, device_id=caller.device_id, server=caller.is_privileged)


async def submit(
    ctx: ApiContext, cmd: WriteCommand, *, wait: bool, traceparent: str = ""
) -> tuple[objects_pb2.Operation, common_pb2.Object | None]:
    """Publish `cmd` durably on its object's partition; with `wait`, return the
    writer's outcome (raising its error when the write failed) or PENDING when it
    takes too long. A full write queue raises ResourceExhausted (nothing queued).

    The write is the span `api.write`, a child of the caller's `traceparent` when
    it sent one; its context travels with the command (docs/observability.md)."""
    parent = sampled_context(traceparent, sampled_only=False) if traceparent else None
    attributes = {"nexxus.app": cmd.app_id, "nexxus.model": cmd.model, "nexxus.op": op_name(cmd.op)}
    with start_span("api", "api.write", parent=parent, root=True, attributes=attributes) as span:
        if span is not None:
            cmd.traceparent = traceparent_of(span)
            span.set_attribute("nexxus.command_id", cmd.command_id)
        return await _submit(ctx, cmd, wait=wait)


async def _queue(
    ctx: ApiContext, cmd: WriteCommand, partition: int, *, reply: bool
) -> asyncio.Future[WriteResult] | None:
    """Publish `cmd` durably on `partition` of its application; with `reply`, the
    future of the writer's WriteResult (wait on it with `ctx.results.wait`)."""
    cmd.issue_time.FromNanoseconds(time.time_ns())
    fut = None
    if reply:
        cmd.reply_subject = ctx.results.reply_subject(cmd.command_id)
        fut = ctx.results.expect(cmd.command_id)
    try:
        await ctx.bus.publish(
            ctx.bus.write_subject(cmd.app_id, partition),
            cmd.SerializeToString(),
            msg_id=cmd.command_id,
            headers={"traceparent": cmd.traceparent} if cmd.traceparent else None,
        )
    except BaseException:
        ctx.results.forget(cmd.command_id)
        raise
    return fut


async def _submit(
    ctx: ApiContext, cmd: WriteCommand, *, wait: bool
) -> tuple[objects_pb2.Operation, common_pb2.Object | None]:
    operation = objects_pb2.Operation(
        operation_id=cmd.command_id, state=objects_pb2.Operation.STATE_PENDING, object_id=cmd.object_id
    )
    partition = write_partition(cmd.app_id, cmd.model, cmd.object_id, ctx.settings.writer.partitions)
    fut = await _queue(ctx, cmd, partition, reply=wait)
    WRITES_ACCEPTED.labels(cmd.app_id, cmd.model, op_name(cmd.op)).inc()
    if fut is None:
        return operation, None
    result = await ctx.results.wait(cmd.command_id, fut, ctx.settings.api.write_wait_seconds)
    if result is None:
        return operation, None
    if not result.ok:
        raise error_from_code(result.error_code, result.error_message, reason=result.error_reason or None)
    operation.state = objects_pb2.Operation.STATE_DONE
    operation.version = result.object.version
    return operation, result.object


async def settle(ctx: ApiContext, app_id: str, model: str, object_id: str) -> bool:
    """Wait until every write queued so far on the object's partition is applied
    (a barrier command through the writer, coalesced per partition); True when
    it was, False when the writer did not answer within `api.write_wait_seconds`
    or the queue refused.

    Called before the api reports an object missing, so a create it accepted
    (answered PENDING) is never followed by a 404 for the same object."""
    partition = write_partition(app_id, model, object_id, ctx.settings.writer.partitions)

    async def send() -> bool:
        cmd = WriteCommand(
            command_id=new_command_id(ctx, app_id),
            app_id=app_id,
            model=model,
            object_id=object_id,
            op=WRITE_OP_BARRIER,
        )
        try:
            fut = await _queue(ctx, cmd, partition, reply=True)
        except NexxusError as exc:
            log.debug("barrier on %s partition %d not queued: %s", app_id, partition, exc)
            return False
        assert fut is not None
        return await ctx.results.wait(cmd.command_id, fut, ctx.settings.api.write_wait_seconds) is not None

    return await ctx.barriers.settle((app_id, partition), send)
