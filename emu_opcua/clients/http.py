"""HTTP client for one meter: status, live values, datalog and logbook (httpx).

A thin adapter: it builds URLs, pages through ranges larger than the meter serves in one
request, hands the bytes to the sans-IO parsers in :mod:`emu_opcua.meter` and translates
httpx's errors into :mod:`emu_opcua.errors` at the boundary (:func:`map_exceptions`), so
callers handle one hierarchy:

==========================================  =====================================
httpx / parser                              emu_opcua.errors
==========================================  =====================================
connection refused, DNS failure, reset      :class:`MeterUnreachable`
connect / read / write / pool timeout       :class:`MeterTimeout`
HTTP 401                                    :class:`AuthenticationFailed`
any other non-2xx status                    :class:`HttpStatusError` (``.status``)
unparseable JSON / CSV                      :class:`ParseError` (``TruncatedDataError``)
==========================================  =====================================

Paging (``/data/`` at most 3000 rows a request, ``/logbook/`` 2048): a range is split into
index ranges of one page each, fetched in the requested direction and concatenated, so no
row is missing or repeated at a page edge even while the meter appends new rows.

Transport: by default each client has its own :class:`MeterHttpTransport` (keep-alive
HTTP/1.1 on asyncio, at most ``max_connections`` connections to its meter; see
:mod:`emu_opcua.clients.http_transport` for why not httpcore). Passing ``transport=``
uses that one instead and leaves it open when the client closes (e.g. one transport
shared by many clients).
"""

from __future__ import annotations

import base64
import contextlib
import ssl
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import httpx

from emu_opcua.clients.http_transport import MeterHttpTransport
from emu_opcua.errors import (
    AuthenticationFailed,
    EmuError,
    HttpStatusError,
    MeterCommunicationError,
    MeterTimeout,
    MeterUnreachable,
    ParseError,
)
from emu_opcua.meter.datalog import DatalogParseResult, DatalogRow, parse_datalog, parse_datalog_lenient
from emu_opcua.meter.logbook import LogbookEntry, parse_logbook
from emu_opcua.meter.meterdata import MeterData, parse_meterdata
from emu_opcua.meter.status import MeterStatus, parse_status

__all__ = [
    "DATALOG_PAGE",
    "LOGBOOK_PAGE",
    "DatalogResult",
    "MeterHttpClient",
    "map_exceptions",
    "page_ranges",
]

#: Most rows the meter serves in one ``/data/`` request.
DATALOG_PAGE = 3000
#: Most rows the meter serves in one ``/logbook/`` request.
LOGBOOK_PAGE = 2048
#: The user name of the meter's HTTP Basic access protection.
USER = "admin"

T = TypeVar("T")


#: A lenient datalog fetch: the rows that parsed, and one error per line that did not
#: (each error's message names the URL, the line and the column).
DatalogResult = DatalogParseResult


@contextlib.contextmanager
def map_exceptions(url: str) -> Iterator[None]:
    """Translate httpx's exceptions raised inside the block into emu_opcua.errors."""
    try:
        yield
    except httpx.TimeoutException as exc:
        kind = {
            httpx.ConnectTimeout: "connecting",
            httpx.ReadTimeout: "waiting for the answer",
            httpx.WriteTimeout: "sending the request",
            httpx.PoolTimeout: "waiting for a free connection",
        }.get(type(exc), "talking to the meter")
        raise MeterTimeout(f"{url}: timed out {kind}") from exc
    except httpx.ConnectError as exc:
        raise MeterUnreachable(f"{url}: cannot connect ({_reason(exc)})") from exc
    except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError, httpx.CloseError) as exc:
        raise MeterUnreachable(f"{url}: connection dropped ({_reason(exc)})") from exc
    except httpx.TransportError as exc:  # protocol errors, unsupported scheme, proxies
        raise MeterCommunicationError(f"{url}: {type(exc).__name__}: {_reason(exc)}") from exc


def _reason(exc: BaseException) -> str:
    """The most specific human-readable cause in an exception chain."""
    text = str(exc)
    cause = exc.__cause__ or exc.__context__
    while not text and cause is not None:
        text = str(cause)
        cause = cause.__cause__ or cause.__context__
    return text or type(exc).__name__


def page_ranges(first: int, last: int, page: int) -> Iterator[tuple[int, int]]:
    """Split the inclusive index range ``first..last`` into ``(from, to)`` pages.

    Ascending when ``first <= last``, descending otherwise; each page holds at most
    ``page`` indices, pages are contiguous and do not overlap.
    """
    if page < 1:
        raise ValueError(f"page size must be >= 1, got {page}")
    if first <= last:
        start = first
        while start <= last:
            end = min(start + page - 1, last)
            yield start, end
            start = end + 1
    else:
        start = first
        while start >= last:
            end = max(start - page + 1, last)
            yield start, end
            start = end - 1


class _SharedTransport(httpx.AsyncBaseTransport):
    """A transport owned by someone else: closing the client leaves it open."""

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self._transport = transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._transport.handle_async_request(request)

    async def aclose(self) -> None:  # the owner closes it
        pass


class MeterHttpClient:
    """The HTTP interface of one meter. Use as ``async with MeterHttpClient(...) as m:``.

    ``timeout`` bounds reading, writing and waiting for a pooled connection;
    ``connect_timeout`` (default: ``timeout``) bounds establishing the connection.
    ``password`` enables HTTP Basic auth as user ``admin``; it never appears in messages.
    """

    def __init__(self, host: str, port: int = 80, *, password: str | None = None,
                 timeout: float = 5.0, connect_timeout: float | None = None,
                 scheme: str = "http", transport: httpx.AsyncBaseTransport | None = None,
                 max_connections: int = 2, verify: bool | ssl.SSLContext = True) -> None:
        self.host = host
        self.port = port
        self.base_url = f"{scheme}://{_host_for_url(host)}:{port}"
        self._has_password = password is not None
        # The client sends its requests straight to the transport (httpx's documented
        # transport API) rather than through httpx.AsyncClient.send: that binds each
        # response to its stream in a reference cycle, and at 200 requests/s those
        # cycles were most of the garbage a 1000-meter gateway's collector had to find.
        self._transport: httpx.AsyncBaseTransport = (
            _SharedTransport(transport) if transport is not None
            else MeterHttpTransport(max_connections=max_connections, verify=verify))
        headers = {"Accept": "*/*", "User-Agent": "emu-opcua"}
        if password is not None:  # HTTP Basic, sent up front (the meter always wants it)
            token = base64.b64encode(f"{USER}:{password}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
        self._headers = httpx.Headers(headers)
        self._extensions = {"timeout": httpx.Timeout(
            timeout, connect=timeout if connect_timeout is None else connect_timeout).as_dict()}

    def __repr__(self) -> str:
        return f"MeterHttpClient({self.base_url!r})"

    async def __aenter__(self) -> MeterHttpClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections (a shared transport stays open)."""
        await self._transport.aclose()

    close = aclose

    def _url(self, path: str, params: dict[str, int | str] | None) -> str:
        """The URL as shown in messages (never with credentials)."""
        if not params:
            return self.base_url + path
        return self.base_url + path + "?" + "&".join(f"{k}={v}" for k, v in params.items())

    # --- raw access -----------------------------------------------------------------
    async def get(self, path: str, params: dict[str, int | str] | None = None) -> bytes:
        """GET ``path`` and return the body; errors translated (see the module doc)."""
        url = self._url(path, params)
        request = httpx.Request("GET", self.base_url + path, params=params, headers=self._headers,
                                extensions=self._extensions)
        with map_exceptions(url):
            response = await self._transport.handle_async_request(request)
            try:
                body = await response.aread()
            finally:
                await response.aclose()
        if response.status_code == 401:
            if self._has_password:
                message = f"{url}: HTTP 401: the meter rejected the password (wrong password for user {USER!r})"
            else:
                message = f"{url}: HTTP 401: the meter requires a password (none given)"
            raise AuthenticationFailed(message)
        if not response.is_success:
            phrase = response.reason_phrase or ""
            raise HttpStatusError(f"{url}: HTTP {response.status_code} {phrase}".rstrip(),
                                  response.status_code)
        return body

    async def _parsed(self, path: str, params: dict[str, int | str] | None,
                      parse: Callable[[bytes], T]) -> T:
        body = await self.get(path, params)
        url = self._url(path, params)
        try:
            result = parse(body)
        except ParseError as exc:
            raise _with_url(exc, url) from exc
        except EmuError:
            raise
        except (ValueError, KeyError, TypeError, IndexError) as exc:  # a parser let one slip
            raise ParseError(f"{type(exc).__name__}: {exc}", where=url) from exc
        if isinstance(result, DatalogParseResult) and result.errors:
            result = DatalogParseResult(result.rows, tuple(_with_url(e, url) for e in result.errors))
        return result

    # --- documents ----------------------------------------------------------------------
    async def status(self) -> MeterStatus:
        """``/status.json``: network, Modbus, NTP and identity settings."""
        return await self._parsed("/status.json", None, parse_status)

    async def meterdata(self) -> MeterData:
        """``/meterdata.json``: live values, and min/max with their times when shown."""
        return await self._parsed("/meterdata.json", None, parse_meterdata)

    # --- datalog ------------------------------------------------------------------------
    async def datalog(self, *, last: int | None = None, from_index: int | None = None,
                      to_index: int | None = None) -> tuple[DatalogRow, ...]:
        """Datalog rows; any bad row raises :class:`ParseError`.

        ``last=N``: the newest N rows, newest first (as the meter sends them).
        ``from_index=A, to_index=B``: rows with index in A..B, ascending when A <= B,
        descending when A > B. Neither: the meter's default, its newest 3000 rows.
        Ranges larger than one page are fetched page by page.
        """
        return await self._paged("/data/", DATALOG_PAGE, _parse_datalog_strict,
                                 last=last, from_index=from_index, to_index=to_index)

    async def datalog_since(self, index: int) -> tuple[DatalogRow, ...]:
        """Every row with an index greater than ``index``, ascending (incremental fetch)."""
        return await self._since("/data/", DATALOG_PAGE, _parse_datalog_strict, index)

    async def datalog_lenient(self, *, last: int | None = None, from_index: int | None = None,
                              to_index: int | None = None) -> DatalogResult:
        """Like :meth:`datalog`, but a bad row does not cost its page: it is reported in
        ``errors`` and the good rows are kept. A truncated last line is such an error."""
        pages = await self._paged("/data/", DATALOG_PAGE, _parse_datalog_lenient,
                                  last=last, from_index=from_index, to_index=to_index, flatten=False)
        return _merge(pages)

    async def datalog_since_lenient(self, index: int) -> DatalogResult:
        """Like :meth:`datalog_since`, keeping the good rows around bad ones."""
        pages = await self._since("/data/", DATALOG_PAGE, _parse_datalog_lenient, index, flatten=False)
        return _merge(pages)

    async def newest_datalog_index(self) -> int | None:
        """Index of the newest datalog row, or None when the datalog is empty."""
        return await self._newest("/data/", _parse_datalog_strict)

    # --- logbook ------------------------------------------------------------------------
    async def logbook(self, *, last: int | None = None, from_index: int | None = None,
                      to_index: int | None = None) -> tuple[LogbookEntry, ...]:
        """Logbook entries (LP meters only; others answer 404 -> HttpStatusError).

        Same parameters as :meth:`datalog`; pages of 2048 entries.
        """
        return await self._paged("/logbook/", LOGBOOK_PAGE, parse_logbook,
                                 last=last, from_index=from_index, to_index=to_index)

    async def logbook_since(self, index: int) -> tuple[LogbookEntry, ...]:
        """Every logbook entry with an index greater than ``index``, ascending."""
        return await self._since("/logbook/", LOGBOOK_PAGE, parse_logbook, index)

    # --- paging -------------------------------------------------------------------------
    async def _newest(self, path: str, parse: Callable[[bytes], tuple]) -> int | None:
        """Index of the newest row (None: no rows). Asks for two rows, so that in lenient
        mode one bad (or cut) row does not hide the newest index; when no row parses,
        the first error is raised rather than pretending the log is empty."""
        result = await self._parsed(path, {"last": 2}, parse)
        rows = _rows_of(result)
        if not rows and isinstance(result, DatalogParseResult) and result.errors:
            raise result.errors[0]
        return _newest_index(rows)

    async def _paged(self, path: str, page: int, parse: Callable[[bytes], T], *,
                     last: int | None, from_index: int | None, to_index: int | None,
                     flatten: bool = True):
        if last is not None and (from_index is not None or to_index is not None):
            raise ValueError("give either last= or from_index=/to_index=, not both")
        if (from_index is None) != (to_index is None):
            raise ValueError("from_index= and to_index= go together")
        if last is not None:
            if last < 1:
                raise ValueError(f"last= must be >= 1, got {last}")
            first_page = await self._parsed(path, {"last": min(last, page)}, parse)
            pages = [first_page]
            rows = _rows_of(first_page)
            if last > page and rows:
                # The newest `page` rows arrived newest first; continue below the oldest
                # of them by index, so rows appended meanwhile cannot shift the pages.
                oldest = min(r.index for r in rows)
                remaining = last - len(rows)
                if remaining > 0 and oldest > 0:
                    stop = max(oldest - remaining, 0)
                    pages += await self._fetch_ranges(path, page, parse, oldest - 1, stop)
            return _flatten(pages) if flatten else pages
        if from_index is None:
            result = await self._parsed(path, None, parse)
            return result if flatten else [result]
        assert to_index is not None
        if from_index < 0 or to_index < 0:
            raise ValueError("indices must be >= 0")
        if abs(to_index - from_index) >= page:
            # Several pages: do not request pages beyond the newest row.
            newest = await self._newest(path, parse)
            if newest is None:
                return () if flatten else []
            if from_index <= to_index:
                to_index = min(to_index, newest)
                if from_index > to_index:
                    return () if flatten else []
            else:
                from_index = min(from_index, newest)
                if from_index < to_index:
                    return () if flatten else []
        pages = await self._fetch_ranges(path, page, parse, from_index, to_index)
        return _flatten(pages) if flatten else pages

    async def _since(self, path: str, page: int, parse: Callable[[bytes], T], index: int,
                     flatten: bool = True):
        newest = await self._newest(path, parse)
        if newest is None or newest <= index:
            return () if flatten else []
        pages = await self._fetch_ranges(path, page, parse, max(index + 1, 0), newest)
        return _flatten(pages) if flatten else pages

    async def _fetch_ranges(self, path: str, page: int, parse: Callable[[bytes], T],
                            first: int, last: int) -> list[T]:
        pages = []
        ascending = first <= last
        for a, b in page_ranges(first, last, page):
            result = await self._parsed(path, {"from": a, "to": b}, parse)
            rows = _rows_of(result)
            # Keep only rows of the requested range, in the requested order (a meter that
            # answers a one-row range or an edge inclusively or in its own order must not
            # cause duplicates or disorder at page edges).
            lo, hi = (a, b) if ascending else (b, a)
            if any(not lo <= r.index <= hi for r in rows) or not _ordered(rows, ascending):
                kept = sorted((r for r in rows if lo <= r.index <= hi),
                              key=lambda r: r.index, reverse=not ascending)
                result = _replace_rows(result, tuple(kept))
            pages.append(result)
        return pages


# --- helpers for the two result shapes (strict tuple, lenient DatalogResult) ---------------
def _rows_of(result) -> tuple:
    return result.rows if isinstance(result, DatalogResult) else result


def _replace_rows(result, rows: tuple):
    if isinstance(result, DatalogResult):
        return DatalogResult(rows, result.errors)
    return rows


def _flatten(pages: list) -> tuple:
    if len(pages) == 1:
        return tuple(pages[0])
    out: list = []
    for p in pages:
        out.extend(p)
    return tuple(out)


def _merge(pages: list) -> DatalogResult:
    if not pages:
        return DatalogResult((), ())
    if len(pages) == 1 and isinstance(pages[0], DatalogResult):
        return pages[0]
    rows: list = []
    errors: list = []
    for p in pages:
        rows.extend(p.rows)
        errors.extend(p.errors)
    return DatalogResult(tuple(rows), tuple(errors))


def _ordered(rows, ascending: bool) -> bool:
    if ascending:
        return all(a.index < b.index for a, b in zip(rows, rows[1:]))
    return all(a.index > b.index for a, b in zip(rows, rows[1:]))


def _newest_index(rows) -> int | None:
    return max((r.index for r in rows), default=None)


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _with_url(exc: ParseError, url: str) -> ParseError:
    """``exc`` again, its message prefixed with the URL the document came from."""
    try:
        new = type(exc)(str(exc), where=url)
    except TypeError:
        new = ParseError(str(exc), where=url)
    new.where = f"{url} {exc.where}".rstrip() if exc.where else url
    return new


def _parse_datalog_strict(body: bytes) -> tuple[DatalogRow, ...]:
    return parse_datalog(body)


def _parse_datalog_lenient(body: bytes) -> DatalogParseResult:
    return parse_datalog_lenient(body)
