"""Write partitions: every command of one object goes to the same partition.

`write_partition(app_id, model, object_id, partitions)` is a stable hash (CRC-32
of the three ids) modulo the partition count. Each partition is applied in order
by one writer copy at a time, so the commands of one object commit in the order
the api accepted them (see the writer and docs/writes.md).
"""

from __future__ import annotations

import zlib

__all__ = ["write_partition"]


def write_partition(app_id: str, model: str, object_id: str, partitions: int) -> int:
    """The partition (0 … partitions-1) of an object; the same in every process and release."""
    if partitions < 1:
        raise ValueError("partitions must be at least 1")
    key = f"{app_id}\x00{model}\x00{object_id}".encode()
    return zlib.crc32(key) % partitions
