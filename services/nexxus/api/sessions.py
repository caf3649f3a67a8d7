"""Issuing and revoking a user's tokens, and closing their connections."""

from __future__ import annotations

from nexxus.api.context import ApiContext
from nexxus.core.models import utcnow
from nexxus.v1.internal_pb2 import TransportControl
from nexxus.v1.users_pb2 import TokenPair


async def issue_tokens(ctx: ApiContext, app_id: str, user_id: str, device_id: str) -> TokenPair:
    issued = ctx.tokens.issue(app_id, user_id, device_id)
    await ctx.identity.store_refresh_token(issued.refresh_record)
    pair = TokenPair(access_token=issued.access_token, refresh_token=issued.refresh_token)
    pair.access_token_expire_time.FromDatetime(issued.access_expires_at)
    pair.refresh_token_expire_time.FromDatetime(issued.refresh_expires_at)
    return pair


async def close_device_connections(ctx: ApiContext, app_id: str, device_ids: list[str], reason: str) -> None:
    if device_ids:
        control = TransportControl(close_device_ids=device_ids, reason=reason)
        await ctx.bus.publish_volatile(ctx.bus.subjects.control(app_id), control.SerializeToString())


async def revoke_device(ctx: ApiContext, app_id: str, device_id: str, reason: str) -> None:
    """Revoke a device's refresh and access tokens and close its connections."""
    await ctx.identity.revoke_refresh_tokens(app_id, device_id=device_id)
    device = await ctx.identity.get_device(app_id, device_id)
    if device is not None:
        device.tokens_valid_after = utcnow()
        await ctx.identity.update_device(device)
    ctx.authenticator.invalidate_device(app_id, device_id)
    await close_device_connections(ctx, app_id, [device_id], reason)


async def revoke_user(ctx: ApiContext, app_id: str, user_id: str, reason: str) -> None:
    """Revoke every token of a user and close all its devices' connections."""
    await ctx.identity.revoke_refresh_tokens(app_id, user_id=user_id)
    user = await ctx.identity.get_user(app_id, user_id)
    if user is not None:
        user.tokens_valid_after = utcnow()
        await ctx.identity.update_user(user, {"tokens_valid_after"})
    ctx.authenticator.invalidate_user(app_id, user_id)
    devices, _ = await ctx.identity.list_devices(app_id, user_id, 1000, "")
    await close_device_connections(ctx, app_id, [d.id for d in devices], reason)
