"""Leases on a NATS key-value bucket (private to the NATS adapter; see
`MessageBus.leases`).

The bucket keeps one revision per key and expires entries `ttl` seconds after
they were written (the stream's max_age, enforced by the server: no client
clocks involved). Acquire = create the key (fails while someone holds it);
renew = update it guarded by the revision we wrote last (fails once it expired
and someone else created it); release = delete guarded the same way.
"""

from __future__ import annotations

import contextlib
import logging

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from nexxus.core.errors import Unavailable
from nexxus.core.ports import Lease, LeaseTable

log = logging.getLogger("nexxus.bus.nats")

__all__ = ["KvLease", "KvLeaseTable", "open_lease_table"]


class KvLease(Lease):
    def __init__(self, kv: KeyValue, key: str, holder: str, revision: int) -> None:
        self._kv = kv
        self.key = key
        self.holder = holder
        self._revision = revision
        self._lost = False

    async def renew(self) -> bool:
        if self._lost:
            return False
        try:
            self._revision = await self._kv.update(self.key, self.holder.encode(), last=self._revision)
        except nats.js.errors.KeyWrongLastSequenceError:
            self._lost = True
            return False
        except (nats.errors.Error, TimeoutError) as exc:
            raise Unavailable(f"cannot renew lease {self.key}: {exc!r}") from exc
        return True

    async def release(self) -> None:
        if self._lost:
            return
        self._lost = True
        with contextlib.suppress(nats.js.errors.KeyWrongLastSequenceError, nats.errors.Error, TimeoutError):
            await self._kv.delete(self.key, last=self._revision)


class KvLeaseTable(LeaseTable):
    def __init__(self, kv: KeyValue, ttl: float) -> None:
        self._kv = kv
        self.ttl = ttl

    async def acquire(self, key: str, holder: str) -> Lease | None:
        for _attempt in range(2):
            try:
                revision = await self._kv.create(key, holder.encode())
            except nats.js.errors.KeyWrongLastSequenceError:
                return None
            except nats.js.errors.KeyNotFoundError:
                # nats-py's create() looks the key up after a refused create: it
                # expired in between. Free now: try once more.
                continue
            except (nats.errors.Error, TimeoutError) as exc:
                raise Unavailable(f"cannot acquire lease {key}: {exc!r}") from exc
            return KvLease(self._kv, key, holder, revision)
        return None

    async def count(self, prefix: str) -> int:
        # Unfiltered: nats-py applies `filters` again as substrings on the client,
        # so a wildcard filter matches nothing. The bucket holds few keys.
        try:
            keys = await self._kv.keys()
        except nats.js.errors.NoKeysError:
            return 0
        except (nats.errors.Error, TimeoutError) as exc:
            raise Unavailable(f"cannot list leases {prefix}*: {exc!r}") from exc
        return sum(1 for key in keys if key.startswith(prefix))


async def open_lease_table(js: JetStreamContext, bucket: str, ttl: float, replicas: int) -> KvLeaseTable:
    """Create the bucket, or bind to it as it is (its ttl wins: every holder must agree)."""
    try:
        try:
            kv = await js.create_key_value(bucket=bucket, ttl=ttl, history=1, replicas=replicas)
        except nats.js.errors.BadRequestError:
            kv = await js.key_value(bucket)
            status = await kv.status()
            actual = status.ttl or ttl
            if abs(actual - ttl) > 1e-3:
                log.warning("lease bucket %s keeps its ttl %.1fs (configured %.1fs)", bucket, actual, ttl)
            ttl = actual
    except (nats.errors.Error, TimeoutError) as exc:
        raise Unavailable(f"cannot open lease bucket {bucket}: {exc!r}") from exc
    return KvLeaseTable(kv, ttl)
