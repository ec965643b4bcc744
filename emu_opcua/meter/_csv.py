"""Shared CSV splitting for the datalog and the logbook.

The manual does not say which separator the meter uses nor whether it sends a header
line; FIELD-EVIDENCE reports ``;`` with an English header from real meters. So this module
accepts either ``;`` or ``,`` (sniffed from the first non-blank line), an optional header
line (recognised because its first field does not start with a digit), CRLF or LF line
ends, blank lines, a trailing separator on every row and whitespace around fields.

It only splits: the datalog and logbook modules convert the fields. A document whose
last line does not end with a newline *and* is incomplete (too few fields, or missing the
trailing separator every other row has) is truncated: :class:`TruncatedDataError`
(returned in ``CsvDocument.truncated``; the caller raises or collects it).
A last line that merely lacks its final newline but is complete is accepted: many HTTP
servers omit that newline. A cut inside the final field of a complete-looking line cannot
be detected from the text alone.
"""

from __future__ import annotations

from datetime import datetime, timezone

from attrs import frozen

from emu_opcua.errors import ParseError, TruncatedDataError

SEPARATORS = (";", ",")


@frozen
class CsvDocument:
    """A CSV document split into records; nothing converted yet."""

    separator: str
    header: tuple[str, ...] | None
    #: (1-based line number, fields) of every non-blank data line, in the order sent;
    #: fields are *not* stripped (the converters tolerate surrounding whitespace).
    records: tuple[tuple[int, list[str]], ...]
    #: True when the document does not end with a newline (the last record may be cut).
    unterminated: bool
    #: Set when the last line is cut; that line is then *not* in ``records``.
    truncated: TruncatedDataError | None = None


def decode_text(data: bytes | str, *, document: str) -> str:
    """``data`` as text: UTF-8 (a BOM is dropped); undecodable bytes are a ParseError."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ParseError(f"not UTF-8 text at byte {exc.start}", where=document) from None
    elif isinstance(data, str):
        text = data
    else:
        raise TypeError(f"{document}: expected bytes or str, got {type(data).__name__}")
    if text.startswith("\ufeff"):
        text = text[1:]
    return text


def sniff_separator(line: str) -> str:
    """The separator of ``line``: the more frequent of ``;`` and ``,`` (``;`` on a tie)."""
    return "," if line.count(",") > line.count(";") else ";"


def is_header(first_field: str) -> bool:
    """A header line's first field does not start with a digit (a data row's timestamp does)."""
    field = first_field.strip().strip('"')
    return not field[:1].isdigit()


def split_document(data: bytes | str, *, document: str, columns: int) -> CsvDocument:
    """Split ``data`` into records of ``columns`` fields (the count is checked by the caller).

    The header, if any, must have ``columns`` fields; its names are not checked (firmware
    versions may word them differently).
    """
    text = decode_text(data, document=document)
    unterminated = bool(text) and text[-1] not in "\r\n"
    lines = text.splitlines()
    sep: str | None = None
    header: tuple[str, ...] | None = None
    records: list[tuple[int, list[str]]] = []
    append = records.append
    trailing: bool | None = None  # whether rows end with a separator (from the first row)
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        if sep is None:
            sep = sniff_separator(line)
            fields = line.split(sep)
            if is_header(fields[0]):
                names = [f.strip().strip('"') for f in fields]
                if len(names) == columns + 1 and names[-1] == "":
                    names.pop()
                if len(names) != columns:
                    raise ParseError(
                        f"header has {len(names)} columns, expected {columns}",
                        where=f"{document} line {number}",
                    )
                header = tuple(names)
                continue
        fields = line.split(sep)
        if trailing is None:
            trailing = len(fields) == columns + 1 and fields[-1] == ""
        if len(fields) == columns + 1 and fields[-1] == "":
            fields.pop()
        append((number, fields))
    truncated = None
    if unterminated and records:
        number, fields = records[-1]
        last_line = lines[number - 1].strip()
        if len(fields) < columns or (trailing and not last_line.endswith(sep or ";")):
            records.pop()
            truncated = TruncatedDataError(
                f"document ends in the middle of a row ({len(fields)} of {columns} columns, "
                "no final newline)",
                where=f"{document} line {number}",
            )
    return CsvDocument(sep or ";", header, tuple(records), unterminated, truncated)


def parse_timestamp(text: str) -> datetime:
    """``2022-09-28T10:30:00Z`` (surrounding whitespace allowed) as a UTC datetime;
    ValueError for anything else. The parsers' fast paths inline the same checks."""
    text = text.strip()
    if len(text) < 20 or text[-1] != "Z" or text[10] != "T":
        raise ValueError("not an ISO 8601 UTC timestamp ending in Z")
    return datetime.fromisoformat(text)


def format_timestamp(t: datetime) -> str:
    """``2022-09-28T10:30:00Z`` (converted to UTC, whole seconds)."""
    if t.utcoffset() is None:
        raise ValueError(f"timestamp must be tz-aware, got {t!r}")
    t = t.astimezone(timezone.utc)
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}Z"


def column_count_error(document: str, number: int, got: int, expected: int) -> ParseError:
    return ParseError(f"row has {got} columns, expected {expected}", where=f"{document} line {number}")


def format_rows(rows, *, header: tuple[str, ...] | None, sep: str) -> str:
    """Join ``rows`` (iterables of already-formatted fields) as CRLF-free LF text."""
    if sep not in SEPARATORS:
        raise ValueError(f"separator must be one of {SEPARATORS!r}, not {sep!r}")
    out = [sep.join(header)] if header is not None else []
    out.extend(sep.join(r) for r in rows)
    return "\n".join(out) + "\n" if out else ""
