"""Search pages cut by bytes as well as by count.

A page of `page_size` objects of up to `limits.max_object_bytes` each could be
far larger than any message a hop carries; `search_page` returns at most
`budget` bytes of objects (always at least one, which the object limit keeps
below the budget) and a token that continues right after the last one.
"""

from __future__ import annotations

from collections.abc import Sequence

from nexxus.core.convert import stored_to_proto
from nexxus.core.filterquery import FilterNode
from nexxus.core.models import SortKey
from nexxus.core.ports import DatabaseAdapter
from nexxus.v1.common_pb2 import Object


async def search_page(
    db: DatabaseAdapter,
    app_id: str,
    model: str,
    node: FilterNode | None,
    sort: Sequence[SortKey],
    page_size: int,
    page_token: str,
    *,
    budget: int,
    owner_id: str | None = None,
) -> tuple[list[Object], str]:
    """One page of objects (as protos) of at most `page_size` objects and about
    `budget` bytes, and the next page's token ("" at the end)."""
    size = page_size
    while True:
        page = await db.search_objects(app_id, model, node, sort, size, page_token, owner_id=owner_id)
        objects = [stored_to_proto(o) for o in page.objects]
        total = 0
        fit = 0
        for obj in objects:
            total += obj.ByteSize()
            if total > budget and fit:
                break
            fit += 1
        if fit == len(objects):
            return objects, page.next_page_token
        # Too many bytes: ask again for the objects that fit, so the adapter's
        # token continues right after them (its tokens are opaque here).
        size = fit
