"""UserService: registration, sign-in (password, OIDC), tokens, profile."""

from __future__ import annotations

import re
from typing import Any, TypeAlias

import grpc

from nexxus.api.calls import caller_of, require_app, require_user, rpc
from nexxus.api.context import ApiContext
from nexxus.api.sessions import issue_tokens, revoke_device, revoke_user
from nexxus.core.convert import dict_to_struct, struct_to_dict
from nexxus.core.errors import InvalidArgument, NotFound, Unauthenticated
from nexxus.core.ids import new_id
from nexxus.core.models import UserRecord
from nexxus.v1 import users_pb2 as pb
from nexxus.v1.users_pb2_grpc import UserServiceServicer

Ctx: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
USERNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{3,64}$")
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{1,63}$")
BAD_LOGIN = "invalid login or password"


def user_to_proto(user: UserRecord) -> pb.User:
    out = pb.User(id=user.id, username=user.username, email=user.email, display_name=user.display_name)
    out.profile.CopyFrom(dict_to_struct(user.profile))
    out.create_time.FromDatetime(user.created_at)
    return out


class UserServicer(UserServiceServicer):
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    async def _device_for(self, app_id: str, user_id: str, device_id: str) -> str:
        if not device_id:
            return ""
        device = await self.ctx.identity.get_device(app_id, device_id)
        if device is None or device.user_id != user_id:
            raise NotFound("no such device for this user", field="device_id", reason="DEVICE_NOT_FOUND")
        return device.id

    def _check_password(self, password: str, field: str) -> None:
        self.ctx.hasher.check_policy(
            password, min_length=self.ctx.settings.auth.min_password_length, field=field
        )

    @rpc
    async def RegisterUser(self, request: pb.RegisterUserRequest, context: Ctx) -> pb.RegisterUserResponse:
        await require_app(self.ctx, request.app_id)
        if not USERNAME_RE.match(request.username):
            raise InvalidArgument(
                "username must be 3-64 characters of letters, digits and _ . -", field="username"
            )
        if request.email and not EMAIL_RE.match(request.email):
            raise InvalidArgument("email is not an e-mail address", field="email")
        if len(request.display_name) > 200:
            raise InvalidArgument("display_name is longer than 200 characters", field="display_name")
        self._check_password(request.password, "password")
        user = UserRecord(
            app_id=request.app_id,
            id=new_id(),
            username=request.username,
            email=request.email,
            display_name=request.display_name or request.username,
            password_hash=await self.ctx.hasher.hash_async(request.password),
        )
        await self.ctx.identity.create_user(user)
        return pb.RegisterUserResponse(user=user_to_proto(user))

    @rpc
    async def Login(self, request: pb.LoginRequest, context: Ctx) -> pb.LoginResponse:
        await require_app(self.ctx, request.app_id)
        login = request.login.strip()
        if not login or not request.password:
            raise InvalidArgument(
                "login and password are required", field="login" if not login else "password"
            )
        await self.ctx.throttle.check(request.app_id, login)
        user = await self.ctx.identity.find_user_by_login(request.app_id, login)
        stored_hash = user.password_hash if user and user.password_hash else None
        ok = await self.ctx.hasher.verify_async(stored_hash, request.password)
        if user is None or not ok:
            await self.ctx.throttle.failed(request.app_id, login)
            raise Unauthenticated(BAD_LOGIN, reason="BAD_CREDENTIALS")
        if self.ctx.hasher.needs_rehash(user.password_hash):
            user.password_hash = await self.ctx.hasher.hash_async(request.password)
            await self.ctx.identity.update_user(user, {"password_hash"})
        device_id = await self._device_for(request.app_id, user.id, request.device_id)
        tokens = await issue_tokens(self.ctx, request.app_id, user.id, device_id)
        return pb.LoginResponse(user=user_to_proto(user), tokens=tokens)

    @rpc
    async def OidcLogin(self, request: pb.OidcLoginRequest, context: Ctx) -> pb.OidcLoginResponse:
        await require_app(self.ctx, request.app_id)
        identity = await self.ctx.oidc.verify(request.provider, request.id_token)
        external_id = f"{request.provider}:{identity.subject}"
        user = await self.ctx.identity.find_user_by_external_id(request.app_id, external_id)
        created = False
        if user is None:
            user = UserRecord(
                app_id=request.app_id,
                id=new_id(),
                username=f"{request.provider}-{new_id()[-12:]}",
                email=identity.email if identity.email_verified else "",
                display_name=identity.name or identity.email or request.provider,
                password_hash="",
                external_ids=[external_id],
            )
            await self.ctx.identity.create_user(user)
            created = True
        device_id = await self._device_for(request.app_id, user.id, request.device_id)
        tokens = await issue_tokens(self.ctx, request.app_id, user.id, device_id)
        return pb.OidcLoginResponse(user=user_to_proto(user), tokens=tokens, created=created)

    @rpc
    async def RefreshToken(self, request: pb.RefreshTokenRequest, context: Ctx) -> pb.RefreshTokenResponse:
        token_hash = self.ctx.tokens.hash_refresh(request.refresh_token)
        record = self.ctx.tokens.check_refresh(
            await self.ctx.identity.get_refresh_token(request.app_id, token_hash)
        )
        user = await self.ctx.identity.get_user(request.app_id, record.user_id)
        if user is None:
            raise Unauthenticated(
                "the refresh token is invalid, expired or revoked", reason="REFRESH_INVALID"
            )
        if record.device_id and await self.ctx.identity.get_device(request.app_id, record.device_id) is None:
            raise Unauthenticated("the device of this refresh token was deleted", reason="REFRESH_INVALID")
        # Rotation: each refresh token works once.
        revoked = await self.ctx.identity.revoke_refresh_tokens(request.app_id, token_hash=token_hash)
        if revoked == 0:
            raise Unauthenticated("the refresh token was already used", reason="REFRESH_INVALID")
        tokens = await issue_tokens(self.ctx, request.app_id, record.user_id, record.device_id)
        return pb.RefreshTokenResponse(tokens=tokens)

    @rpc
    async def Logout(self, request: pb.LogoutRequest, context: Ctx) -> pb.LogoutResponse:
        caller = await caller_of(self.ctx, context, request.app_id)
        require_user(caller)
        if caller.device_id:
            await revoke_device(self.ctx, request.app_id, caller.device_id, "logged out")
        else:
            await revoke_user(self.ctx, request.app_id, caller.user_id, "logged out")
        return pb.LogoutResponse()

    async def _me(self, context: Ctx, app_id: str) -> UserRecord:
        caller = await caller_of(self.ctx, context, app_id)
        require_user(caller)
        user = await self.ctx.identity.get_user(app_id, caller.user_id)
        if user is None:
            raise Unauthenticated("the user of this token no longer exists", reason="USER_GONE")
        return user

    @rpc
    async def GetMe(self, request: pb.GetMeRequest, context: Ctx) -> pb.GetMeResponse:
        return pb.GetMeResponse(user=user_to_proto(await self._me(context, request.app_id)))

    @rpc
    async def UpdateMe(self, request: pb.UpdateMeRequest, context: Ctx) -> pb.UpdateMeResponse:
        user = await self._me(context, request.app_id)
        changed: set[str] = set()
        if request.email:
            if not EMAIL_RE.match(request.email):
                raise InvalidArgument("email is not an e-mail address", field="email")
            user.email = request.email
            changed.add("email")
        if request.display_name:
            if len(request.display_name) > 200:
                raise InvalidArgument("display_name is longer than 200 characters", field="display_name")
            user.display_name = request.display_name
            changed.add("display_name")
        if request.HasField("profile"):
            profile = struct_to_dict(request.profile)
            if len(request.profile.SerializeToString()) > 64 * 1024:
                raise InvalidArgument("profile is larger than 64 KiB", field="profile")
            user.profile = profile
            changed.add("profile")
        await self.ctx.identity.update_user(user, changed)
        return pb.UpdateMeResponse(user=user_to_proto(user))

    @rpc
    async def ChangePassword(
        self, request: pb.ChangePasswordRequest, context: Ctx
    ) -> pb.ChangePasswordResponse:
        user = await self._me(context, request.app_id)
        await self.ctx.throttle.check(request.app_id, user.username)
        if not user.password_hash or not await self.ctx.hasher.verify_async(
            user.password_hash, request.current_password
        ):
            await self.ctx.throttle.failed(request.app_id, user.username)
            raise Unauthenticated("the current password is wrong", reason="BAD_CREDENTIALS")
        self._check_password(request.new_password, "new_password")
        user.password_hash = await self.ctx.hasher.hash_async(request.new_password)
        # Every session ends; the caller signs in again with the new password.
        await self.ctx.identity.update_user(user, {"password_hash"})
        await revoke_user(self.ctx, request.app_id, user.id, "password changed")
        return pb.ChangePasswordResponse()
