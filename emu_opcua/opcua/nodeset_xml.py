"""The one NodeSet2 XML writer: the header, a node with its names and references, the bytes.

``nodeset.py`` (EmuMeter) and ``di_nodeset.py`` (the DI subset) state their models; this
module writes them in the UANodeSet schema, the same way, so that regenerating gives
the same bytes (what ``--check`` and the tests compare).
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from pathlib import Path

NS_NODESET = "http://opcfoundation.org/UA/2011/03/UANodeSet.xsd"
NS_TYPES = "http://opcfoundation.org/UA/2008/02/Types.xsd"
UA_NAMESPACE_URI = "http://opcfoundation.org/UA/"
UA_MODEL_VERSION = "1.04.7"
UA_PUBLICATION_DATE = "2020-07-15T00:00:00Z"

#: (reference type, target node id, forward)
Reference = tuple[str, str, bool]
#: (locale or None, text)
Text = tuple[str | None, str]


def n(tag: str) -> str:
    """``tag`` in the UANodeSet namespace."""
    return f"{{{NS_NODESET}}}{tag}"


def t(tag: str) -> str:
    """``tag`` in the UA Types namespace (values)."""
    return f"{{{NS_TYPES}}}{tag}"


def add_text(parent: ET.Element, tag: str, text: str, locale: str | None = None) -> None:
    """A LocalizedText value (``tag``) with its Locale, if any, and Text."""
    el = ET.SubElement(parent, t(tag))
    if locale is not None:
        ET.SubElement(el, t("Locale")).text = locale
    ET.SubElement(el, t("Text")).text = text


def add_texts(variable: ET.Element, texts: Iterable[str], locale: str | None = None) -> None:
    """A variable's Value: a ListOfLocalizedText (EnumStrings, OptionSetValues)."""
    values = ET.SubElement(ET.SubElement(variable, n("Value")), t("ListOfLocalizedText"))
    for text in texts:
        add_text(values, "LocalizedText", text, locale)


def add_extension_object(parent: ET.Element, type_xml: int, body_tag: str) -> ET.Element:
    """An ExtensionObject of XML encoding ``i=type_xml`` in ``parent``; returns its body."""
    ext = ET.SubElement(parent, t("ExtensionObject"))
    ET.SubElement(ET.SubElement(ext, t("TypeId")), t("Identifier")).text = f"i={type_xml}"
    return ET.SubElement(ET.SubElement(ext, t("Body")), t(body_tag))


class NodeSetWriter:
    """One UANodeSet document of one namespace (index 1 in the file) requiring namespace 0."""

    def __init__(self, namespace_uri: str, model_version: str, publication_date: str,
                 aliases: Mapping[str, str] | None = None) -> None:
        ET.register_namespace("", NS_NODESET)
        ET.register_namespace("uax", NS_TYPES)
        self.root = ET.Element(n("UANodeSet"), {"LastModified": publication_date})
        ET.SubElement(ET.SubElement(self.root, n("NamespaceUris")), n("Uri")).text = namespace_uri
        model = ET.SubElement(ET.SubElement(self.root, n("Models")), n("Model"), {
            "ModelUri": namespace_uri, "Version": model_version, "PublicationDate": publication_date})
        ET.SubElement(model, n("RequiredModel"), {
            "ModelUri": UA_NAMESPACE_URI, "Version": UA_MODEL_VERSION, "PublicationDate": UA_PUBLICATION_DATE})
        if aliases:
            element = ET.SubElement(self.root, n("Aliases"))
            for alias, node_id in aliases.items():
                ET.SubElement(element, n("Alias"), {"Alias": alias}).text = node_id

    def node(self, tag: str, node_id: str, browse: str, display: Iterable[Text],
             refs: Iterable[Reference], attrs: Mapping[str, str] | None = None, *,
             descriptions: Iterable[Text] = (), browse_ns: int = 1) -> ET.Element:
        """A node element (``UAObject``, ``UAVariable`` ...): DisplayNames, Descriptions, References.

        ``browse_ns`` 0 names a standard browse name (EnumStrings, EngineeringUnits).
        asyncua keeps the last DisplayName / Description of a node: pass the default last.
        """
        el = ET.SubElement(self.root, n(tag), {
            "NodeId": node_id, "BrowseName": f"{browse_ns}:{browse}" if browse_ns else browse, **(attrs or {})})
        for name, texts in (("DisplayName", display), ("Description", descriptions)):
            for locale, text in texts:
                ET.SubElement(el, n(name), {"Locale": locale} if locale else {}).text = text
        references = ET.SubElement(el, n("References"))
        for ref_type, target, forward in refs:
            ref_attrs = {"ReferenceType": ref_type}
            if not forward:
                ref_attrs["IsForward"] = "false"
            ET.SubElement(references, n("Reference"), ref_attrs).text = target
        return el

    def to_bytes(self) -> bytes:
        ET.indent(self.root, space="  ")
        return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(self.root, encoding="utf-8") + b"\n"


def write_or_check(path: Path, data: bytes, module: str, argv: list[str]) -> int:
    """A generator's ``main``: rewrite the committed file, or (``--check``) exit 1 if it is stale."""
    if "--check" in argv:
        current = path.read_bytes() if path.exists() else b""
        if current != data:
            print(f"{path} is stale; run python -m {module}", file=sys.stderr)
            return 1
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    print(f"wrote {path} ({len(data)} bytes)")
    return 0
