"""The simulated meter's web server (aiohttp.web): the manual's endpoints, auth, faults.

Meter endpoints (HTTP Basic auth, user ``admin``, when the meter has a password):

- ``GET /``: a small HTML page with the current values (refreshes every 5 s);
- ``GET /status.json``, ``GET /meterdata.json``: encoded by ``emu_opcua.meter``;
- ``GET /data/`` (datalog) and ``GET /logbook/`` (LP variant only, else 404), ``text/csv``
  with the English header line and ``;``, selected by :func:`select_indices`.

Row selection (the manual plus what it leaves open, decided here):

- no parameter: the newest ``cap`` rows, newest first (``cap`` 3000 datalog, 2048 logbook);
- ``last=N`` (N >= 1): the newest min(N, cap, rows held) rows, newest first;
- ``from=A&to=B``: ascending when A <= B, descending when A > B; the range is first
  *clipped* to the indices the meter still holds (oldest..newest: once the datalog ring
  has wrapped, or after a factory reset, the oldest is no longer 1), then the first
  ``cap`` rows in the requested order are sent. So ``from=1&to=3000`` on a wrapped
  datalog starts at the oldest row held. A range entirely outside the held indices gives
  the header only (200, no rows), never an error: a client paging forward simply gets an
  empty page;
- ``from=A`` alone: A up to the newest, ascending (capped); ``to`` alone is 400;
- a parameter that is not a non-negative decimal integer, ``last=0``, or ``last`` together
  with ``from``/``to``: 400 Bad Request. Unknown parameters are ignored.

Simulator control (not part of any real meter) is served only by the fleet's control
server (``fleet.control_app``, on 127.0.0.1), never on a meter's own port: a real meter
has no such routes, so a client cannot tell a simulated meter by them, and nobody on the
meter's network can switch faults or read settings. Per meter (n = position or serial),
under ``/_sim/meters/{n}``:

- ``GET .../faults`` -> the fault switches as JSON; ``PUT`` or ``POST`` a JSON object
  with some switches to change them (400 on an unknown switch or a bad value);
  ``DELETE`` clears every fault;
- ``POST .../events/power_outage?seconds=S`` (off the network for S simulated seconds;
  0 or absent: a blip); ``POST .../events/clock_change?offset=S``;
  ``POST .../events/ct_ratio?primary=P&secondary=S``; ``.../vt_ratio?primary=&secondary=``;
  ``POST .../events/pulse?value=V&length_ms=L``;
  ``POST .../events/load?watts=W`` forces the total active power (no ``watts``: back to
  the load profile), so a value changes at a known instant;
  ``POST .../events/index_reset`` (factory reset: datalog cleared, index from 1);
  ``POST .../events/replace_meter?serial=N`` (another meter at the same address);
- ``GET .../info`` -> serial, ports, power and clock state, datalog and logbook sizes
  (whether a password is set, never the password).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import html
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from emu_opcua.meter.catalogue import CATALOGUE
from emu_opcua.meter.datalog import format_datalog
from emu_opcua.meter.logbook import format_logbook
from emu_opcua.meter.meterdata import format_meterdata
from emu_opcua.meter.status import format_status
from emu_opcua.simulator.faults import truncate_csv, truncate_json

if TYPE_CHECKING:
    from emu_opcua.simulator.fleet import SimulatedMeter

DATALOG_CAP = 3000
LOGBOOK_CAP = 2048
USER = "admin"
REALM = "EMU Professional II"
CSV_TYPE = "text/csv"

METER_KEY = web.AppKey("meter", object)


class BadQuery(ValueError):
    """A datalog/logbook query the meter rejects (400)."""


def _int_param(query, name: str) -> int | None:
    text = query.get(name)
    if text is None:
        return None
    if not text.isdigit() or not text.isascii():
        raise BadQuery(f"{name} must be a non-negative integer, got {text!r}")
    return int(text)


def select_indices(query, newest: int, cap: int, oldest: int = 1) -> range:
    """The row indices a meter holding rows ``oldest``..``newest`` sends for ``query`` (a
    mapping of query parameters), in the order sent. See the module docstring."""
    last = _int_param(query, "last")
    start = _int_param(query, "from")
    stop = _int_param(query, "to")
    if last is not None:
        if start is not None or stop is not None:
            raise BadQuery("last cannot be combined with from/to")
        if last == 0:
            raise BadQuery("last must be at least 1")
    if start is None and stop is not None:
        raise BadQuery("to requires from")
    oldest = max(oldest, 1)
    held = max(newest - oldest + 1, 0)
    if start is None:
        n = min(cap, held if last is None else last, held)
        return range(newest, newest - n, -1)
    if stop is None:
        stop = max(newest, start)
    if start <= stop:
        lo, hi = max(start, oldest), min(stop, newest)
        if lo > hi:
            return range(0)
        return range(lo, min(hi, lo + cap - 1) + 1)
    hi, lo = min(start, newest), max(stop, oldest)
    if lo > hi:
        return range(0)
    return range(hi, max(lo, hi - cap + 1) - 1, -1)


# --- auth and faults ----------------------------------------------------------------------
def check_basic_auth(header: str | None, password: str) -> bool:
    if not header or not header.startswith("Basic "):
        return False
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    user, sep, given = decoded.partition(":")
    return bool(sep) and user == USER and given == password


@web.middleware
async def meter_middleware(request: web.Request, handler: Callable) -> web.StreamResponse:
    meter: SimulatedMeter = request.app[METER_KEY]
    faults = meter.faults
    if faults.delay:
        await asyncio.sleep(faults.delay)
    required = faults.wrong_password if faults.wrong_password is not None else meter.password
    if required and not check_basic_auth(request.headers.get("Authorization"), required):
        return web.Response(status=401, text="401 Unauthorized\n",
                            headers={"WWW-Authenticate": f'Basic realm="{REALM}"'})
    if faults.http_500:
        return web.Response(status=500, text="500 Internal Server Error\n")
    return await handler(request)


# --- meter endpoints ------------------------------------------------------------------------
def _json(body: bytes, meter: SimulatedMeter) -> web.Response:
    if meter.faults.malformed_json:
        body = truncate_json(body)
    return web.Response(body=body, content_type="application/json")


def _csv(text: str, meter: SimulatedMeter) -> web.Response:
    if meter.faults.truncated_csv:
        text = truncate_csv(text)
    return web.Response(text=text, content_type=CSV_TYPE)


async def status_json(request: web.Request) -> web.Response:
    meter: SimulatedMeter = request.app[METER_KEY]
    return _json(format_status(meter.status()), meter)


async def meterdata_json(request: web.Request) -> web.Response:
    meter: SimulatedMeter = request.app[METER_KEY]
    return _json(format_meterdata(meter.meterdata()), meter)


async def datalog_csv(request: web.Request) -> web.Response:
    meter: SimulatedMeter = request.app[METER_KEY]
    meter.advance()
    try:
        physics = meter.physics
        indices = select_indices(request.query, physics.last_index, DATALOG_CAP, physics.first_index)
    except BadQuery as exc:
        raise web.HTTPBadRequest(text=f"400 Bad Request: {exc}\n") from None
    return _csv(format_datalog(meter.datalog_rows(indices)), meter)


async def logbook_csv(request: web.Request) -> web.Response:
    meter: SimulatedMeter = request.app[METER_KEY]
    if not meter.has_logbook:
        raise web.HTTPNotFound(text="404 Not Found (this meter has no logbook)\n")
    meter.advance()
    try:
        indices = select_indices(request.query, meter.physics.logbook_count, LOGBOOK_CAP)
    except BadQuery as exc:
        raise web.HTTPBadRequest(text=f"400 Bad Request: {exc}\n") from None
    return _csv(format_logbook(meter.logbook_entries(indices)), meter)


_PAGE = """<!DOCTYPE html>
<html lang="de"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<title>EMU Professional II {serial}</title>
<style>body{{font-family:sans-serif}} td{{padding:2px 10px}} td.v{{text-align:right}}</style>
</head><body>
<h1>EMU Professional II TCP/IP &ndash; {serial}</h1>
<p>Aktuelle Werte / current values, {time} UTC (simulated meter)</p>
<table>{rows}</table>
<p>Datenlogger: <a href="/data/">/data/</a> &middot; <a href="/data/?last=96">/data/?last=96</a>
{logbook}&middot; <a href="/status.json">status.json</a> &middot;
<a href="/meterdata.json">meterdata.json</a></p>
</body></html>
"""


async def index_html(request: web.Request) -> web.Response:
    meter: SimulatedMeter = request.app[METER_KEY]
    data = meter.meterdata()
    rows = []
    for q in CATALOGUE:
        if q.meterdata and q.code in data.values:
            unit = q.unit.symbol if q.unit else ""
            rows.append(
                f"<tr><td>{html.escape(q.display_de)}</td><td>{html.escape(q.display_en)}</td>"
                f'<td class="v">{data.values[q.code]:.3f}</td><td>{html.escape(unit)}</td></tr>'
            )
    logbook = ('&middot; Logbuch: <a href="/logbook/">/logbook/</a> ' if meter.has_logbook else "")
    page = _PAGE.format(serial=html.escape(meter.serial), time=data.meter_time.strftime("%Y-%m-%d %H:%M:%S"),
                        rows="\n".join(rows), logbook=logbook)
    return web.Response(text=page, content_type="text/html")


# --- simulator control ----------------------------------------------------------------------
MeterLookup = Callable[[web.Request], "SimulatedMeter"]


def _json_response(obj: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(obj, indent=2) + "\n", status=status, content_type="application/json")


def _int_arg(request: web.Request, name: str, *, required: bool = True, signed: bool = False) -> int | None:
    text = request.query.get(name)
    if text is None:
        if required:
            raise web.HTTPBadRequest(text=f"400 Bad Request: {name} is required\n")
        return None
    try:
        value = int(text)
    except ValueError:
        raise web.HTTPBadRequest(text=f"400 Bad Request: {name} must be an integer\n") from None
    if not signed and value < 0:
        raise web.HTTPBadRequest(text=f"400 Bad Request: {name} must not be negative\n")
    return value


def _float_arg(request: web.Request, name: str) -> float:
    text = request.query.get(name)
    if text in (None, ""):
        return 0.0
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value < float("inf"):
        raise web.HTTPBadRequest(text=f"400 Bad Request: {name} must be a number >= 0\n")
    return value


def add_control_routes(app: web.Application, prefix: str, lookup: MeterLookup) -> None:
    """The control routes of one meter under ``prefix`` (``/_sim/meters/{n}``)."""

    async def get_faults(request: web.Request) -> web.Response:
        return _json_response(lookup(request).faults.as_dict())

    async def set_faults(request: web.Request) -> web.Response:
        meter = lookup(request)
        try:
            changes = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text="400 Bad Request: body must be a JSON object\n") from None
        if not isinstance(changes, dict):
            raise web.HTTPBadRequest(text="400 Bad Request: body must be a JSON object\n")
        try:
            await meter.apply_faults(**changes)
        except (ValueError, TypeError) as exc:
            raise web.HTTPBadRequest(text=f"400 Bad Request: {exc}\n") from None
        return _json_response(meter.faults.as_dict())

    async def clear_faults(request: web.Request) -> web.Response:
        meter = lookup(request)
        await meter.clear_faults()
        return _json_response(meter.faults.as_dict())

    async def event(request: web.Request) -> web.Response:
        meter = lookup(request)
        name = request.match_info["event"]
        if name == "power_outage":
            await meter.power_outage(_float_arg(request, "seconds"))
        elif name == "index_reset":
            meter.index_reset()
        elif name == "replace_meter":
            try:
                meter.replace_meter(_int_arg(request, "serial", required=False))
            except ValueError as exc:
                raise web.HTTPBadRequest(text=f"400 Bad Request: {exc}\n") from None
        elif name == "clock_change":
            meter.clock_change(_int_arg(request, "offset", signed=True))
        elif name == "ct_ratio":
            meter.change_ct_ratio(_int_arg(request, "primary"), _int_arg(request, "secondary"))
        elif name == "vt_ratio":
            meter.change_vt_ratio(_int_arg(request, "primary"), _int_arg(request, "secondary"))
        elif name == "load":
            text = request.query.get("watts")
            try:
                watts = None if text in (None, "") else float(text)
            except ValueError:
                raise web.HTTPBadRequest(text="400 Bad Request: watts must be a number\n") from None
            meter.set_load(watts)
        elif name == "pulse":
            meter.change_pulse(_int_arg(request, "value", required=False),
                               _int_arg(request, "length_ms", required=False))
        else:
            raise web.HTTPNotFound(text=f"404 Not Found: unknown event {name!r}\n")
        return _json_response({"event": name, "ok": True})

    async def info(request: web.Request) -> web.Response:
        return _json_response(lookup(request).info())

    async def get_module(request: web.Request) -> web.Response:
        return _json_response(lookup(request).module_info())

    async def set_module(request: web.Request) -> web.Response:
        """The TCP module's switches: SMP link faults (drop_requests, drop_replies,
        reply_delay, reboot_after_upload_bytes), online_update_allowed, reboot_time."""
        meter = lookup(request)
        try:
            changes = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text="400 Bad Request: body must be a JSON object\n") from None
        if not isinstance(changes, dict):
            raise web.HTTPBadRequest(text="400 Bad Request: body must be a JSON object\n")
        try:
            meter.set_module(**changes)
        except (ValueError, TypeError) as exc:
            raise web.HTTPBadRequest(text=f"400 Bad Request: {exc}\n") from None
        return _json_response(meter.module_info())

    app.router.add_get(f"{prefix}/faults", get_faults)
    app.router.add_put(f"{prefix}/faults", set_faults)
    app.router.add_post(f"{prefix}/faults", set_faults)
    app.router.add_delete(f"{prefix}/faults", clear_faults)
    app.router.add_post(prefix + "/events/{event}", event)
    app.router.add_get(f"{prefix}/info", info)
    app.router.add_get(f"{prefix}/module", get_module)
    app.router.add_post(f"{prefix}/module", set_module)


def make_app(meter: SimulatedMeter) -> web.Application:
    """The web application of one simulated meter."""
    app = web.Application(middlewares=[meter_middleware])
    app[METER_KEY] = meter
    app.router.add_get("/", index_html)
    app.router.add_get("/status.json", status_json)
    app.router.add_get("/meterdata.json", meterdata_json)
    app.router.add_get("/data/", datalog_csv)
    app.router.add_get("/data", datalog_csv)
    app.router.add_get("/logbook/", logbook_csv)
    app.router.add_get("/logbook", logbook_csv)
    return app


__all__ = ["DATALOG_CAP", "LOGBOOK_CAP", "BadQuery", "add_control_routes", "make_app", "select_indices"]
