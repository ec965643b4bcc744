"""Writing many Values into asyncua's address space in one pass: the one place that sets
a Value attribute directly instead of through ``Server.write_attribute_value``.

Used to refresh the SourceTimestamp of values that did not change (``refresh_timestamps``):
every good poll rewrites every value of the poll, so at 1000 meters that is tens of
thousands of writes a second. ``write_attribute_value`` costs ~5.4 us a value (three
awaited calls, node and attribute look-ups, a type check); setting the attribute held
by the caller costs ~1.5 us, DataValue included (measured on the project's 2-core
machine). What it skips, and why that is sound here: the type check (the Variant is the
one already written and checked), nulling the value of a Bad status (only Good values are
refreshed), the BrowseName/DisplayName sync (only Value attributes are written).
What it keeps: the data change callbacks (subscriptions: asyncua's monitored items decide
whether a new timestamp alone is a change, per their DataChangeTrigger). An attribute
with a value setter (the model's shared, read-only attributes) goes the public way.

Pinned by ``tests/opcua/test_batchwrite.py`` (Read and subscriptions see what is written).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from asyncua import Server, ua
from asyncua.server.address_space import AttributeValue

log = logging.getLogger(__name__)

__all__ = ["value_attribute", "write_values"]


def value_attribute(server: Server, node_id: ua.NodeId) -> AttributeValue:
    """The Value attribute of ``node_id`` (look it up once, write it often)."""
    return server.iserver.aspace[node_id].attributes[ua.AttributeIds.Value]


async def write_values(server: Server, writes: Sequence[tuple[ua.NodeId, AttributeValue, ua.DataValue]]) -> None:
    """Store each DataValue (Good, of the type already written) and tell subscriptions."""
    for node_id, attribute, value in writes:
        if attribute.value_setter is not None:
            await server.write_attribute_value(node_id, value)
            continue
        attribute.value = value
        attribute.value_callback = None
        if attribute.datachange_callbacks:
            for handle, callback in list(attribute.datachange_callbacks.items()):
                try:
                    await callback(handle, value)
                except Exception:  # noqa: BLE001 - as asyncua does: one bad callback must not stop the others
                    log.exception("data change callback %s of %s failed", handle, node_id)
