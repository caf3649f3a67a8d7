"""ObjectService: validated model writes (queued to the writer) and reads."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypeAlias

import grpc

from nexxus.api.calls import caller_of, incoming_traceparent, rpc
from nexxus.api.context import ApiContext
from nexxus.api.writes import actor_of, new_command_id, settle, submit
from nexxus.auth.caller import Caller
from nexxus.auth.rules import RuleSet
from nexxus.core.convert import dict_to_struct, stored_to_proto, struct_to_dict
from nexxus.core.errors import InvalidArgument, NotFound
from nexxus.core.filterquery import And, FilterNode, parse_filter
from nexxus.core.ids import is_valid_id, new_id
from nexxus.core.jsonpatch import apply_patch, patch_from_proto
from nexxus.core.limits import limits_of
from nexxus.core.models import SortKey, StoredObject, utcnow
from nexxus.core.operations import issued_at, verify_operation_id
from nexxus.core.pages import search_page
from nexxus.core.schema import ModelSchema
from nexxus.v1 import objects_pb2 as pb
from nexxus.v1.internal_pb2 import WRITE_OP_CREATE, WRITE_OP_DELETE, WRITE_OP_UPDATE, WriteCommand, WriteOp
from nexxus.v1.objects_pb2_grpc import ObjectServiceServicer

Ctx: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
SYSTEM_SORT_FIELDS = {"id", "version", "create_time", "update_time"}
MAX_PAGE_SIZE = 1000


ChangeRequest = pb.UpdateObjectRequest | pb.DeleteObjectRequest


def _change_command(
    command_id: str,
    request: ChangeRequest,
    op: WriteOp.ValueType,
    caller: Caller,
    schema: ModelSchema,
    current: StoredObject,
) -> WriteCommand:
    """The command of an update or delete already checked against `current`.

    Under a filter rule the write is pinned to the version the rule was checked
    against, so a concurrent change cannot slip in between the check and the apply."""
    version = request.expected_version
    action = "update" if op == WRITE_OP_UPDATE else "delete"
    if not version and schema.rule(action).get("kind") == "filter":
        version = current.version
    return WriteCommand(
        command_id=command_id,
        app_id=request.app_id,
        model=request.model,
        op=op,
        object_id=request.object_id,
        expected_version=version,
        actor=actor_of(caller),
    )


class ObjectServicer(ObjectServiceServicer):
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    async def _model(self, context: Ctx, app_id: str, model: str) -> tuple[Caller, ModelSchema, RuleSet]:
        caller = await caller_of(self.ctx, context, app_id)
        schema = await self.ctx.schemas.require(app_id, model)
        return caller, schema, RuleSet.from_schema(schema)

    async def _readable(
        self, caller: Caller, rules: RuleSet, app_id: str, model: str, object_id: str
    ) -> StoredObject:
        obj = await self.ctx.db.get_object(app_id, model, object_id)
        if (obj is None or not rules.can_read(caller, obj)) and await settle(
            self.ctx, app_id, model, object_id
        ):
            # Missing (or not readable), but a write accepted just before may still be
            # queued: read again once every write queued before now on its partition is
            # applied. Both cases wait alike, so the answer's timing tells them apart no
            # more than its content.
            obj = await self.ctx.db.get_object(app_id, model, object_id)
        # An object the caller may not read looks exactly like a missing one.
        if obj is None or not rules.can_read(caller, obj):
            raise NotFound(
                f"{model} {object_id!r} does not exist", field="object_id", reason="OBJECT_NOT_FOUND"
            )
        return obj

    @rpc
    async def CreateObject(self, request: pb.CreateObjectRequest, context: Ctx) -> pb.CreateObjectResponse:
        caller, schema, rules = await self._model(context, request.app_id, request.model)
        data = schema.validate_object(struct_to_dict(request.data), path="data")
        limits_of(self.ctx.settings).check_object(data, field="data")
        rules.check_create(caller, data)
        object_id = request.object_id or new_id()
        if not is_valid_id(object_id):
            raise InvalidArgument(
                "object_id must be 1-128 characters of letters, digits and _ . : -", field="object_id"
            )
        cmd = WriteCommand(
            command_id=new_command_id(self.ctx, request.app_id),
            app_id=request.app_id,
            model=request.model,
            op=WRITE_OP_CREATE,
            object_id=object_id,
            data=dict_to_struct(data),
            actor=actor_of(caller),
        )
        operation, obj = await submit(
            self.ctx, cmd, wait=request.wait, traceparent=incoming_traceparent(context)
        )
        return pb.CreateObjectResponse(operation=operation, object=obj)

    @rpc
    async def GetObject(self, request: pb.GetObjectRequest, context: Ctx) -> pb.GetObjectResponse:
        caller, _, rules = await self._model(context, request.app_id, request.model)
        obj = await self._readable(caller, rules, request.app_id, request.model, request.object_id)
        return pb.GetObjectResponse(object=stored_to_proto(obj))

    @rpc
    async def UpdateObject(self, request: pb.UpdateObjectRequest, context: Ctx) -> pb.UpdateObjectResponse:
        caller, schema, rules = await self._model(context, request.app_id, request.model)
        if not request.patch:
            raise InvalidArgument("patch must hold at least one operation", field="patch")
        limit = limits_of(self.ctx.settings)
        patch_bytes = sum(op.ByteSize() for op in request.patch)
        if patch_bytes > limit.max_object_bytes:
            raise InvalidArgument(
                f"the patch is {patch_bytes} bytes; the limit (limits.max_object_bytes) is "
                f"{limit.max_object_bytes} bytes",
                field="patch",
                reason="OBJECT_TOO_LARGE",
            )
        patch = patch_from_proto(request.patch, schema)
        current = await self._readable(caller, rules, request.app_id, request.model, request.object_id)
        # Check the rule against the stored object and the result the patch would give
        # (and its size: the writer checks again against the object it really patches).
        patched = apply_patch(current.data, patch, schema)
        limit.check_object(patched, field="patch")
        rules.check_update(caller, current, patched)
        cmd_id = new_command_id(self.ctx, request.app_id)
        cmd = _change_command(cmd_id, request, WRITE_OP_UPDATE, caller, schema, current)
        cmd.patch.extend(request.patch)
        operation, obj = await submit(
            self.ctx, cmd, wait=request.wait, traceparent=incoming_traceparent(context)
        )
        return pb.UpdateObjectResponse(operation=operation, object=obj)

    @rpc
    async def DeleteObject(self, request: pb.DeleteObjectRequest, context: Ctx) -> pb.DeleteObjectResponse:
        caller, schema, rules = await self._model(context, request.app_id, request.model)
        current = await self._readable(caller, rules, request.app_id, request.model, request.object_id)
        rules.check_delete(caller, current)
        cmd_id = new_command_id(self.ctx, request.app_id)
        cmd = _change_command(cmd_id, request, WRITE_OP_DELETE, caller, schema, current)
        operation, _ = await submit(
            self.ctx, cmd, wait=request.wait, traceparent=incoming_traceparent(context)
        )
        return pb.DeleteObjectResponse(operation=operation)

    @rpc
    async def SearchObjects(self, request: pb.SearchObjectsRequest, context: Ctx) -> pb.SearchObjectsResponse:
        caller, schema, rules = await self._model(context, request.app_id, request.model)
        node: FilterNode | None = None
        if request.HasField("filter"):  # `{}` is an error (docs/filterquery.md), not "everything"
            node = parse_filter(
                struct_to_dict(request.filter), schema, path="filter", auth=caller.auth_context()
            )
        scope = rules.read_scope(caller)
        if scope.deny_all:
            return pb.SearchObjectsResponse()
        if scope.filter is not None:
            node = scope.filter if node is None else And((node, scope.filter))
        sort = [self._sort_key(schema, i, s) for i, s in enumerate(request.sort)]
        page_size = request.page_size or 100
        if not 0 < page_size <= MAX_PAGE_SIZE:
            raise InvalidArgument(f"page_size must be 1..{MAX_PAGE_SIZE}", field="page_size")
        objects, token = await search_page(
            self.ctx.db,
            request.app_id,
            request.model,
            node,
            sort,
            page_size,
            request.page_token,
            budget=limits_of(self.ctx.settings).page_bytes,
            owner_id=scope.owner_id,
        )
        return pb.SearchObjectsResponse(objects=objects, next_page_token=token)

    @staticmethod
    def _sort_key(schema: ModelSchema, index: int, sort: pb.SortField) -> SortKey:
        if sort.field not in SYSTEM_SORT_FIELDS:
            spec = schema.field_at(tuple(sort.field.split(".")))
            if spec is None or not spec.filterable or spec.kind in ("object", "array"):
                raise InvalidArgument(
                    f"cannot sort by {sort.field!r}: not a filterable scalar field",
                    field=f"sort[{index}].field",
                )
        return SortKey(field=sort.field, descending=sort.descending)

    def _not_applied_yet(self, request: pb.GetOperationRequest) -> pb.Operation:
        """An operation without a record: PENDING when this deployment's api issued
        it (it was queued before its id was handed out) and its record cannot have
        been trimmed yet; NotFound otherwise."""
        op_id = request.operation_id
        issued = issued_at(op_id)
        if issued is not None and verify_operation_id(
            request.app_id, op_id, self.ctx.settings.auth.signing_key
        ):
            kept = timedelta(seconds=self.ctx.settings.writer.operations_retention_seconds)
            if utcnow() - issued < kept:
                return pb.Operation(operation_id=op_id, state=pb.Operation.STATE_PENDING)
            raise NotFound(
                "the operation is older than the operations retention window",
                field="operation_id",
                reason="OPERATION_EXPIRED",
            )
        raise NotFound("unknown operation", field="operation_id", reason="OPERATION_NOT_FOUND")

    @rpc
    async def GetOperation(self, request: pb.GetOperationRequest, context: Ctx) -> pb.GetOperationResponse:
        await caller_of(self.ctx, context, request.app_id)
        record = await self.ctx.db.get_operation(request.app_id, request.operation_id)
        if record is None:
            return pb.GetOperationResponse(operation=self._not_applied_yet(request))
        state = pb.Operation.STATE_DONE if record.ok else pb.Operation.STATE_FAILED
        return pb.GetOperationResponse(
            operation=pb.Operation(
                operation_id=record.command_id,
                state=state,
                error_code=record.error_code,
                error_message=record.error_message,
                object_id=record.object_id,
                version=record.version,
            )
        )
