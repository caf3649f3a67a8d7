"""Nexxus asyncio client over gRPC (grpclib, betterproto2 stubs from `nexxus_client_proto`)."""

from nexxus_client_proto.nexxus import v1

from nexxus_client.client import Backoff, EventStream, NexxusClient, Patch, patch
from nexxus_client.errors import NexxusClientError

__all__ = ["Backoff", "EventStream", "NexxusClient", "NexxusClientError", "Patch", "patch", "v1"]
