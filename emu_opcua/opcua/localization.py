"""DisplayName and Description in the client's locale (OPC 10000-4 5.4, 5.6.3; OPC 10000-3 8.4).

asyncua keeps one LocalizedText per attribute: our nodes hold their English texts, the
German ones the NodeSet2 file carries are dropped on import. This module keeps them
aside and answers each session in the locale it asked for in ActivateSession.

The table: every node of the NodeSet2 file (``nodeset.NODESET_PATH``, generated from the
catalogue and ``nodeset.TYPE_GROUPS``) maps to ``{locale: LocalizedText}`` for its
DisplayName and Description, keyed by its string id (``EmuMeterType.Measurements.
AcActivePowerTotal``). A meter's node ``<meter>.<Group>.<Member>[.EngineeringUnits]``
(see ``model.py``) carries the texts of the type's node at the same browse path, so it
is looked up by that path (``Measurements.AcActivePowerTotal``): the table does not grow
with the fleet, every LocalizedText is one object shared by all meters. Nodes the
nodeset does not describe (the Meters folder, each meter object, whose name is its own)
keep the one text they have.

The hook: :func:`install` replaces the server's session factory
(``InternalServer.create_session``, called by asyncua's UaProcessor for every
CreateSession) so client sessions are :class:`LocalizedSession`. It remembers the locale
negotiated in ActivateSession and replaces the DisplayName / Description results of
Read and the DisplayName of Browse / BrowseNext ReferenceDescriptions (by other objects:
the address space's own are never changed, other sessions still see them). A
session in the default locale (English, or a locale we have no texts in) is answered
exactly as before, without looking at the results; in a German session a Read of Value
attributes costs one integer comparison per item. The server's own internal session is
not touched.

Not localized: the Value of variables (e.g. EUInformation texts, EnumStrings), and
monitored items on DisplayName / Description (they report the stored text).
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from collections.abc import Container, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asyncua import Server, ua

from emu_opcua.opcua import nodeset as ns
from emu_opcua.opcua.nodeset_xml import n as nodeset_tag
from emu_opcua.opcua.services import Services, ServiceSession

if TYPE_CHECKING:
    from emu_opcua.opcua.model import MeterModel

#: The locale our nodes' stored texts are in, served when nothing better matches.
DEFAULT_LOCALE = "en"

_DISPLAY_NAME = ua.AttributeIds.DisplayName
_DESCRIPTION = ua.AttributeIds.Description
_TYPE_PREFIX = ns.TYPE_NAME + "."
_NODE_TAGS = ("UAObject", "UAVariable", "UAObjectType", "UAVariableType", "UADataType",
              "UAReferenceType", "UAMethod", "UAView")


def _normalize(locale: str) -> str:
    return locale.strip().replace("_", "-").lower()


def match_locale(requested: Sequence[str] | None, available: Iterable[str],
                 default: str = DEFAULT_LOCALE) -> str:
    """The available locale to answer a client preferring ``requested`` (most preferred first).

    OPC 10000-4 5.4: the server returns the most preferred translation it has. For each
    requested LocaleId in turn: an exact match (case-insensitive, "de_DE" read as
    "de-DE"), else one of the same language ("de" for "de-AT"; the bare language first).
    Nothing matches, or nothing was requested: ``default``.
    """
    exact: dict[str, str] = {}
    by_language: dict[str, str] = {}
    for locale in sorted(available, key=lambda a: (len(a), a)):  # "de" before "de-AT"
        key = _normalize(locale)
        if not key:
            continue
        exact.setdefault(key, locale)
        by_language.setdefault(key.split("-", 1)[0], locale)
    for wanted in requested or ():
        key = _normalize(wanted or "")
        if not key:
            continue
        if key in exact:
            return exact[key]
        language = key.split("-", 1)[0]
        if language in by_language:
            return by_language[language]
    return default


class _Texts:
    """One node's texts: locale -> LocalizedText, for DisplayName and Description."""

    __slots__ = ("display_name", "description")

    def __init__(self) -> None:
        self.display_name: dict[str, ua.LocalizedText] = {}
        self.description: dict[str, ua.LocalizedText] = {}

    def get(self, attribute: int) -> dict[str, ua.LocalizedText]:
        return self.display_name if attribute == _DISPLAY_NAME else self.description


class Localizer:
    """The table of localized DisplayNames / Descriptions of our namespace's nodes.

    ``meters`` is consulted on each look-up (``MeterModel.meters`` works): a node
    ``<meter>.<path>`` is localized when ``<meter>`` is in it.
    """

    def __init__(self, namespace_index: int, meters: Container[str],
                 texts: Mapping[str, _Texts], default: str = DEFAULT_LOCALE) -> None:
        self.namespace_index = namespace_index
        self.meters = meters
        self.default = default
        self._types: dict[str, _Texts] = dict(texts)
        # a meter's member, by its path below the meter: the type's entry, shared
        self._members: dict[str, _Texts] = {
            key[len(_TYPE_PREFIX):]: entry for key, entry in self._types.items() if key.startswith(_TYPE_PREFIX)}
        locales: set[str] = set()
        for entry in self._types.values():
            locales.update(entry.display_name, entry.description)
        self.locales: frozenset[str] = frozenset(locales | {default})
        # Read answers, one shared DataValue per text (asyncua itself answers attribute
        # reads with the stored DataValue object; these are never written either)
        self._values: dict[int, ua.DataValue] = {}
        for entry in self._types.values():
            for text in (*entry.display_name.values(), *entry.description.values()):
                self._values.setdefault(id(text), ua.DataValue(Value=ua.Variant(text, ua.VariantType.LocalizedText)))

    @classmethod
    def from_nodeset(cls, namespace_index: int, meters: Container[str],
                     path: Path | str = ns.NODESET_PATH) -> Localizer:
        """Read every node's DisplayName / Description per locale from the NodeSet2 file.

        ``namespace_index``: the server's index of ``nodeset.NAMESPACE_URI`` (the file's
        own index 1).
        """
        root = ET.parse(path).getroot()
        texts: dict[str, _Texts] = {}
        shared: dict[tuple[str, str], ua.LocalizedText] = {}  # one object per distinct text
        for tag in _NODE_TAGS:
            for el in root.iter(nodeset_tag(tag)):
                node_id = el.get("NodeId", "")
                if not node_id.startswith("ns=1;s="):
                    continue
                entry = texts.setdefault(node_id[len("ns=1;s="):], _Texts())
                for attr_tag, table in (("DisplayName", entry.display_name), ("Description", entry.description)):
                    for text_el in el.findall(nodeset_tag(attr_tag)):
                        locale, text = text_el.get("Locale") or "", text_el.text or ""
                        if locale:
                            table[locale] = shared.setdefault((locale, text), ua.LocalizedText(text, locale))
        return cls(namespace_index, meters, texts)

    def negotiate(self, locale_ids: Sequence[str] | None) -> str | None:
        """The locale a session with these LocaleIds is answered in; None: the stored texts."""
        locale = match_locale(locale_ids, self.locales, self.default)
        return None if locale == self.default else locale

    # --- the table ----------------------------------------------------------------------------
    def _entry(self, node_id: ua.NodeId) -> _Texts | None:
        if node_id.NamespaceIndex != self.namespace_index:
            return None
        ident = node_id.Identifier
        if not isinstance(ident, str):
            return None
        entry = self._types.get(ident)
        if entry is None:
            meter, dot, path = ident.partition(".")
            if dot and meter in self.meters:
                entry = self._members.get(path)
        return entry

    def texts(self, node_id: ua.NodeId, attribute: int = _DISPLAY_NAME) -> Mapping[str, ua.LocalizedText]:
        """``{locale: LocalizedText}`` of a node's DisplayName (or Description); {} if none."""
        entry = self._entry(node_id)
        return {} if entry is None else entry.get(attribute)

    def localized(self, node_id: ua.NodeId, attribute: int, locale: str) -> ua.LocalizedText | None:
        entry = self._entry(node_id)
        return None if entry is None else entry.get(attribute).get(locale)

    # --- replacing service results (never changing the address space's own objects) ------------
    def localize_read(self, nodes: Sequence[ua.ReadValueId], results: list[ua.DataValue],
                      locale: str) -> list[ua.DataValue]:
        for i, item in enumerate(nodes):
            attribute = item.AttributeId
            if attribute != _DISPLAY_NAME and attribute != _DESCRIPTION:
                continue  # Value and the rest: untouched
            dv = results[i]
            if dv.Value is None or (dv.StatusCode is not None and not dv.StatusCode.is_good()):
                continue  # no such node / attribute: the error as asyncua gave it
            text = self.localized(item.NodeId, attribute, locale)
            if text is not None:
                results[i] = self._values[id(text)]
        return results

    def localize_browse(self, results: list[ua.BrowseResult], locale: str) -> list[ua.BrowseResult]:
        for result in results:
            refs = result.References
            if not refs:
                continue
            localized = list(refs)
            changed = False
            for i, ref in enumerate(refs):
                text = self.localized(ref.NodeId, _DISPLAY_NAME, locale)
                if text is not None and ref.DisplayName.Text:
                    localized[i] = dataclasses.replace(ref, DisplayName=text)
                    changed = True
            if changed:
                result.References = localized
        return results


class LocalizedSession(ServiceSession):
    """A client session answering DisplayName / Description in its negotiated locale."""

    def __init__(self, *args: Any, localizer: Localizer, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.localizer = localizer
        self.locale: str | None = None  # None: the default locale, results untouched

    def activate_session(self, params: ua.ActivateSessionParameters,
                         peer_certificate: bytes | None) -> ua.ActivateSessionResult:
        result = super().activate_session(params, peer_certificate)
        # each ActivateSession may change the LocaleIds (OPC 10000-4 5.6.3)
        self.locale = self.localizer.negotiate(params.LocaleIds)
        return result

    async def read(self, params: ua.ReadParameters) -> list[ua.DataValue]:
        results = await super().read(params)
        if self.locale is None:
            return results
        return self.localizer.localize_read(params.NodesToRead, results, self.locale)

    async def browse(self, params: ua.BrowseParameters) -> list[ua.BrowseResult]:
        results = await super().browse(params)
        if self.locale is None:
            return results
        return self.localizer.localize_browse(results, self.locale)

    async def browse_next(self, parameters: ua.BrowseNextParameters) -> list[ua.BrowseResult]:
        results = await super().browse_next(parameters)
        if self.locale is None:
            return results
        return self.localizer.localize_browse(results, self.locale)


def install(server: Server, model: MeterModel, services: Services, *,
            session_class: type[LocalizedSession] = LocalizedSession) -> Localizer:
    """Make ``server`` answer client sessions in their locale; call once, after building ``model``.

    Sessions created from now on are ``session_class`` (:class:`LocalizedSession`, a
    ``services.ServiceSession`` with ``services``, or a subclass);
    ``InternalServer.create_session`` is replaced on this server's instance only, with
    the same arguments.
    """
    localizer = Localizer.from_nodeset(model.namespace_index, model.meters)
    iserver = server.iserver

    def create_session(name: str, *args: Any, **kwargs: Any) -> LocalizedSession:
        return session_class(iserver, iserver.aspace, iserver.subscription_service, name, *args,
                             localizer=localizer, services=services, **kwargs)

    iserver.create_session = create_session
    return localizer
