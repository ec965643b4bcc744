"""DisplayName / Description in the client's locale (OPC 10000-4 5.4, 5.6.3), over TCP.

A real GatewayServer on 127.0.0.1 (ephemeral port) and real asyncua clients whose
sessions ask for different LocaleIds. The meters point at a port nothing listens on:
their values stay Bad, their names are what is tested. German texts are taken from the
catalogue and ``nodeset.TYPE_GROUPS``, the data the NodeSet2 file is generated from.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

import pytest
import pytest_asyncio
from asyncua import Client, ua

from emu_opcua.meter.catalogue import BY_CODE
from emu_opcua.opcua import nodeset
from emu_opcua.opcua.config import MeterConfig, ServerConfig
from emu_opcua.opcua.localization import Localizer, match_locale
from emu_opcua.opcua.model import node_id_string
from emu_opcua.opcua.serve import GatewayServer

#: The TCP tests share one gateway (module scope) and so its event loop.
on_module_loop = pytest.mark.asyncio(loop_scope="module")

METERS = ("boiler", "hall-3")
POWER = BY_CODE["active_power_total"]  # AcActivePowerTotal: "Active power total" / "Wirkleistung total"
MEASUREMENTS = nodeset.GROUPS["Measurements"]  # "Measurements" / "Messwerte"
EXTREMES = nodeset.GROUPS["Extremes"]  # "Extremes" / "Extremwerte"
DN, DESC = ua.AttributeIds.DisplayName, ua.AttributeIds.Description


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- locale matching (pure) -------------------------------------------------------------------
@pytest.mark.parametrize(("requested", "available", "expected"), [
    (["de"], {"en", "de"}, "de"),
    (["de-DE"], {"en", "de"}, "de"),  # language-only match
    (["de-AT"], {"en", "de"}, "de"),
    (["DE_at"], {"en", "de"}, "de"),  # case-insensitive, "_" read as "-"
    (["fr"], {"en", "de"}, "en"),  # nothing matches: the default
    ([], {"en", "de"}, "en"),  # nothing asked: the default
    (None, {"en", "de"}, "en"),
    (["", "de"], {"en", "de"}, "de"),  # empty entries are skipped
    (["fr", "de-CH"], {"en", "de"}, "de"),  # the most preferred one we have
    (["en-US", "de"], {"en", "de"}, "en"),
    (["de-AT", "en"], {"en", "de"}, "de"),  # a language match of the first beats an exact second
    (["de-AT"], {"en", "de", "de-AT"}, "de-AT"),  # exact before language-only
    (["de-CH"], {"en", "de-AT", "de"}, "de"),  # language-only: the bare language first
    (["de-CH"], {"en", "de-AT"}, "de-AT"),
    (["de"], {"en", "de-DE"}, "de-DE"),
])
def test_match_locale(requested, available, expected):
    assert match_locale(requested, available) == expected


# --- the table (pure: no server) ------------------------------------------------------------------
IDX = 2


@pytest.fixture(scope="module")
def localizer() -> Localizer:
    return Localizer.from_nodeset(IDX, {"boiler"})


def test_every_member_of_a_meter_has_its_german_and_english_texts(localizer):
    for group in nodeset.TYPE_GROUPS:
        group_id = ua.NodeId(node_id_string("boiler", group.browse_name), IDX)
        assert localizer.texts(group_id, DN)["de"] == ua.LocalizedText(group.display_de, "de")
        assert localizer.texts(group_id, DESC)["de"] == ua.LocalizedText(group.description_de, "de")
        assert localizer.texts(group_id, DN)["en"] == ua.LocalizedText(group.display_en, "en")
        for member in group.members:
            member_id = ua.NodeId(node_id_string("boiler", group.browse_name, member.browse_name), IDX)
            assert localizer.texts(member_id, DN)["de"].Text == member.display_de, member_id
            assert localizer.texts(member_id, DESC)["de"].Text == member.description_de, member_id
            assert localizer.texts(member_id, DN)["en"].Text == member.display_en, member_id
    # the type's own nodes
    type_id = ua.NodeId(f"{nodeset.TYPE_NAME}.Measurements.{POWER.browse_name}", IDX)
    assert localizer.texts(type_id, DN)["de"].Text == POWER.display_de
    assert localizer.locales == {"en", "de"}


def test_only_our_nodes_are_in_the_table(localizer):
    path = ("Measurements", POWER.browse_name)
    assert localizer.texts(ua.NodeId(node_id_string("boiler", *path), IDX))
    assert localizer.texts(ua.NodeId(node_id_string("nobody", *path), IDX)) == {}  # not a meter
    assert localizer.texts(ua.NodeId(node_id_string("boiler", *path), IDX + 1)) == {}  # other namespace
    assert localizer.texts(ua.NodeId("boiler", IDX)) == {}  # the meter object keeps its name
    assert localizer.texts(ua.NodeId(ua.ObjectIds.ObjectsFolder)) == {}


def test_instances_share_the_types_text_objects():
    loc = Localizer.from_nodeset(IDX, {"boiler", "hall-3"})
    a = loc.localized(ua.NodeId("boiler.Measurements.AcFrequency", IDX), DN, "de")
    b = loc.localized(ua.NodeId("hall-3.Measurements.AcFrequency", IDX), DN, "de")
    assert a is not None and a is b


def test_negotiate_default_means_untouched(localizer):
    assert localizer.negotiate(["de-AT"]) == "de"
    assert localizer.negotiate(["en-GB"]) is None
    assert localizer.negotiate(["fr"]) is None
    assert localizer.negotiate([]) is None


# --- over TCP -----------------------------------------------------------------------------------
@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gateway(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("localization")
    dead = free_port()  # nothing listens: pollers back off, names are all we need
    meters = tuple(MeterConfig(name=name, host="127.0.0.1", http_port=dead, modbus_port=dead,
                               http_timeout=1.0, modbus_timeout=1.0) for name in METERS)
    config = ServerConfig(host="127.0.0.1", port=free_port(), pki_dir=tmp / "pki",
                          application_uri="urn:test:emu-opcua", security_policies=("None",), meters=meters)
    async with GatewayServer(config) as gw:
        yield gw


async def connect(gateway: GatewayServer, locales: Sequence[str] | None) -> Client:
    client = Client(gateway.config.endpoint, timeout=10)
    if locales is not None:
        client.set_locale(list(locales))
    await client.connect()
    return client


def ids(gateway: GatewayServer, meter: str = "boiler") -> dict[str, ua.NodeId]:
    model = gateway.model
    return {
        "measurements": ua.NodeId(node_id_string(meter, MEASUREMENTS.browse_name), model.namespace_index),
        "extremes": ua.NodeId(node_id_string(meter, EXTREMES.browse_name), model.namespace_index),
        "power": model.quantity(meter, POWER.code),
        "meter": model.meters[meter].object,
    }


async def read_texts(client: Client, node_ids: Sequence[ua.NodeId], attribute) -> list[ua.LocalizedText]:
    params = ua.ReadParameters()
    params.NodesToRead = [ua.ReadValueId(NodeId=n, AttributeId=attribute) for n in node_ids]
    results = await client.uaclient.read(params)
    assert all(dv.StatusCode.is_good() for dv in results), results
    return [dv.Value.Value for dv in results]


async def browsed_names(client: Client, node_id: ua.NodeId) -> dict[str, ua.LocalizedText]:
    refs = await client.get_node(node_id).get_references(
        refs=ua.ObjectIds.HierarchicalReferences, direction=ua.BrowseDirection.Forward)
    return {ref.BrowseName.Name: ref.DisplayName for ref in refs}


@on_module_loop
async def test_german_session_reads_german_names(gateway):
    n = ids(gateway)
    client = await connect(gateway, ["de-DE"])
    try:
        names = await read_texts(client, [n["measurements"], n["extremes"], n["power"]], DN)
        assert names == [ua.LocalizedText(MEASUREMENTS.display_de, "de"), ua.LocalizedText(EXTREMES.display_de, "de"),
                         ua.LocalizedText(POWER.display_de, "de")]
        descriptions = await read_texts(client, [n["measurements"], n["power"]], DESC)
        assert [d.Text for d in descriptions] == [MEASUREMENTS.description_de, POWER.description_de]
        # the same through the Node API, on the second meter and on the type itself
        other = ids(gateway, "hall-3")["power"]
        assert (await client.get_node(other).read_display_name()).Text == POWER.display_de
        type_node = ua.NodeId(f"{nodeset.TYPE_NAME}.Measurements.{POWER.browse_name}", gateway.model.namespace_index)
        assert (await client.get_node(type_node).read_display_name()).Text == POWER.display_de
        # a meter object has no German name: its own name, as stored
        assert (await client.get_node(n["meter"]).read_display_name()).Text == "boiler"
    finally:
        await client.disconnect()


@on_module_loop
async def test_german_session_browses_german_names(gateway):
    n = ids(gateway)
    client = await connect(gateway, ["de-DE"])
    try:
        groups = await browsed_names(client, n["meter"])
        assert groups["Measurements"] == ua.LocalizedText(MEASUREMENTS.display_de, "de")
        assert groups["Extremes"] == ua.LocalizedText(EXTREMES.display_de, "de")
        members = await browsed_names(client, n["measurements"])
        assert members[POWER.browse_name] == ua.LocalizedText(POWER.display_de, "de")
        assert members["AcFrequency"].Text == BY_CODE["frequency"].display_de
    finally:
        await client.disconnect()


@on_module_loop
async def test_value_reads_untouched_in_a_german_session(gateway):
    n = ids(gateway)
    german, english = await connect(gateway, ["de"]), await connect(gateway, ["en"])
    try:
        mixed = [(n["power"], ua.AttributeIds.Value), (n["power"], DN), (n["power"], ua.AttributeIds.BrowseName)]
        params = ua.ReadParameters()
        params.NodesToRead = [ua.ReadValueId(NodeId=node, AttributeId=attr) for node, attr in mixed]
        de = await german.uaclient.read(params)
        en = await english.uaclient.read(params)
        assert de[1].Value.Value.Text == POWER.display_de and en[1].Value.Value.Text == POWER.display_en
        for a, b in ((de[0], en[0]), (de[2], en[2])):  # Value and BrowseName as stored
            assert (a.StatusCode, a.Value) == (b.StatusCode, b.Value)
    finally:
        await german.disconnect()
        await english.disconnect()


@on_module_loop
@pytest.mark.parametrize("locales", [["en"], None, [], ["fr"], ["en-US", "de"]],
                         ids=["en", "client-default", "no-locale", "fr-falls-back", "en-US-first"])
async def test_other_sessions_see_english(gateway, locales):
    n = ids(gateway)
    # a German session first: it must not leave German behind in shared objects
    german = await connect(gateway, ["de"])
    try:
        await read_texts(german, [n["measurements"], n["power"]], DN)
        await browsed_names(german, n["measurements"])
        await browsed_names(german, n["meter"])
    finally:
        await german.disconnect()
    client = await connect(gateway, locales)
    try:
        names = await read_texts(client, [n["measurements"], n["extremes"], n["power"]], DN)
        assert names == [ua.LocalizedText(MEASUREMENTS.display_en, "en"), ua.LocalizedText(EXTREMES.display_en, "en"),
                         ua.LocalizedText(POWER.display_en, "en")]
        assert (await client.get_node(n["power"]).read_description()).Text == POWER.description_en
        groups = await browsed_names(client, n["meter"])
        assert groups["Measurements"] == ua.LocalizedText(MEASUREMENTS.display_en, "en")
        members = await browsed_names(client, n["measurements"])
        assert members[POWER.browse_name] == ua.LocalizedText(POWER.display_en, "en")
    finally:
        await client.disconnect()


@on_module_loop
async def test_regional_locale_gets_the_language(gateway):
    n = ids(gateway)
    client = await connect(gateway, ["fr-FR", "de-AT", "en"])
    try:
        assert await read_texts(client, [n["power"]], DN) == [ua.LocalizedText(POWER.display_de, "de")]
    finally:
        await client.disconnect()
