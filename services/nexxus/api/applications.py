"""ApplicationService: tenants and their model schemas."""

from __future__ import annotations

import re
from typing import Any, TypeAlias

import grpc
from google.protobuf import json_format, struct_pb2

from nexxus.api.calls import caller_of, require_app, require_operator, rpc
from nexxus.api.context import ApiContext
from nexxus.auth.rules import RuleSet
from nexxus.auth.server_keys import generate_server_key, hash_server_key
from nexxus.core.convert import dict_to_struct, struct_to_dict
from nexxus.core.errors import AlreadyExists, InvalidArgument, PermissionDenied
from nexxus.core.ids import new_id
from nexxus.core.models import AppRecord, utcnow
from nexxus.core.schema import ModelSchema
from nexxus.core.schema_registry import SchemaRegistry
from nexxus.v1 import applications_pb2 as pb
from nexxus.v1.applications_pb2_grpc import ApplicationServiceServicer

APP_ID_RE = re.compile(r"^[a-z][a-z0-9-]{1,62}$")
Ctx: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


def app_to_proto(app: AppRecord) -> pb.Application:
    out = pb.Application(id=app.id, display_name=app.display_name, optional_auth=app.optional_auth)
    out.create_time.FromDatetime(app.created_at)
    return out


class ApplicationServicer(ApplicationServiceServicer):
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    @rpc
    async def CreateApplication(
        self, request: pb.CreateApplicationRequest, context: Ctx
    ) -> pb.CreateApplicationResponse:
        require_operator(self.ctx, context)
        app_id = request.app_id or f"app-{new_id()[-10:]}"
        if not APP_ID_RE.match(app_id):
            raise InvalidArgument(
                "app_id must be 2-63 characters of a-z, 0-9 and '-', starting with a letter", field="app_id"
            )
        if len(request.display_name) > 200:
            raise InvalidArgument("display_name is longer than 200 characters", field="display_name")
        if await self.ctx.identity.get_app(app_id) is not None:
            raise AlreadyExists(f"application {app_id!r} already exists", field="app_id")
        server_key = generate_server_key()
        record = AppRecord(
            id=app_id,
            display_name=request.display_name or app_id,
            optional_auth=request.optional_auth,
            server_key_hash=hash_server_key(server_key),
            created_at=utcnow(),
        )
        await self.ctx.identity.create_app(record)
        return pb.CreateApplicationResponse(application=app_to_proto(record), server_key=server_key)

    @rpc
    async def GetApplication(
        self, request: pb.GetApplicationRequest, context: Ctx
    ) -> pb.GetApplicationResponse:
        require_operator(self.ctx, context)
        return pb.GetApplicationResponse(
            application=app_to_proto(await require_app(self.ctx, request.app_id))
        )

    @rpc
    async def DeleteApplication(
        self, request: pb.DeleteApplicationRequest, context: Ctx
    ) -> pb.DeleteApplicationResponse:
        require_operator(self.ctx, context)
        await require_app(self.ctx, request.app_id)
        await self.ctx.store.delete_app(request.app_id)
        await self.ctx.db.delete_app_data(request.app_id)
        await self.ctx.identity.delete_app(request.app_id)
        self.ctx.schemas.invalidate(request.app_id)
        self.ctx.authenticator.invalidate_app(request.app_id)
        await SchemaRegistry.announce(self.ctx.bus, request.app_id)
        return pb.DeleteApplicationResponse()

    async def _schema_admin(self, app_id: str, context: Ctx) -> None:
        caller = await caller_of(self.ctx, context, app_id)
        if not caller.is_privileged:
            raise PermissionDenied(
                "model schemas need the operator credential or the application's server key",
                reason="SERVER_KEY_REQUIRED",
            )
        await require_app(self.ctx, app_id)

    @rpc
    async def PutModelSchema(
        self, request: pb.PutModelSchemaRequest, context: Ctx
    ) -> pb.PutModelSchemaResponse:
        await self._schema_admin(request.app_id, context)
        if request.HasField("document"):
            if request.HasField("schema"):
                raise InvalidArgument("set schema or document, not both", field="document")
            # The REST body: docs/schema.md's form (short names) or the enum names.
            document = struct_to_dict(request.document)
            schema = ModelSchema.from_dict(document, name=request.model)
        else:
            raw = json_format.MessageToDict(request.schema, preserving_proto_field_name=True)
            raw["name"] = request.model
            schema = ModelSchema.from_dict(raw, name=request.model)
        # Access filters are FilterQueries over the schema itself: reject bad ones now.
        RuleSet.from_schema(schema)
        await self.ctx.identity.put_schema(request.app_id, schema.to_dict())
        self.ctx.schemas.invalidate(request.app_id)
        await SchemaRegistry.announce(self.ctx.bus, request.app_id)
        return pb.PutModelSchemaResponse(schema=schema.to_proto(), document=schema_document(schema))

    @rpc
    async def ListModelSchemas(
        self, request: pb.ListModelSchemasRequest, context: Ctx
    ) -> pb.ListModelSchemasResponse:
        await caller_of(self.ctx, context, request.app_id)
        await require_app(self.ctx, request.app_id)
        schemas = sorted((await self.ctx.schemas.app_schemas(request.app_id)).values(), key=lambda s: s.name)
        return pb.ListModelSchemasResponse(
            schemas=[s.to_proto() for s in schemas], documents=[schema_document(s) for s in schemas]
        )


def schema_document(schema: ModelSchema) -> struct_pb2.Struct:
    """docs/schema.md's form of a schema (what PUT takes), without the name (the path has it)."""
    doc = schema.to_dict()
    doc.pop("name", None)
    return dict_to_struct(doc)
