"""The server's TOML configuration, read once into frozen attrs classes.

Every mistake raises :class:`emu_opcua.errors.ConfigError` naming the file, the entry
(``meters[2] 'boiler'``) and the field, e.g.::

    meters.toml: meters[2] 'boiler': http_port: must be 1-65535, got 70000

Layout (see ``examples/meters.toml``)::

    [server]      endpoint, names, certificate host names, PKI folder, security
    [[users]]     name, password_hash (from ``hash_password``), role
    [defaults]    any meter field, applied to every meter unless it sets its own
    [[meters]]    name, host, ports, password, register map, poll intervals, timeouts
"""

from __future__ import annotations

import os
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from attrs import field, frozen

from emu_opcua.errors import ConfigError

SECURITY_POLICIES = (
    "None",
    "Basic256Sha256_Sign",
    "Basic256Sha256_SignAndEncrypt",
    "Aes256_Sha256_RsaPss_Sign",
    "Aes256_Sha256_RsaPss_SignAndEncrypt",
)
ROLES = ("reader", "operator", "admin")
Role = Literal["reader", "operator", "admin"]


@frozen
class UserConfig:
    name: str
    password_hash: str = field(repr=False)
    role: Role = "reader"


@frozen
class MeterConfig:
    name: str
    host: str
    http_port: int = 80
    modbus_port: int | Literal["auto"] = "auto"  # "auto": the port status.json reports
    unit_id: int = 1
    password: str | None = field(default=None, repr=False)  # HTTP Basic password (user admin)
    register_map: Path | None = None
    fast_interval: float = 1.0  # s, Modbus live values
    extremes_interval: float = 5.0  # s, meterdata.json (min/max, cross-check)
    status_interval: float = 60.0  # s, status.json
    datalog_interval: float = 60.0  # s, datalog rows (reactive energy, neutral current)
    http_timeout: float = 5.0  # s
    modbus_timeout: float = 2.0  # s
    stale_after: float = 30.0  # s a value stays Uncertain (last usable) before it turns Bad
    # firmware update of the TCP module (mcumgr SMP over UDP)
    smp_port: int = 1337
    firmware_mtu: int = 628  # link MTU the SMP datagrams are sized for (600-byte datagrams)
    firmware_reboot_timeout: float = 120.0  # s the meter may take to answer again after a reset
    firmware_key_hash: bytes | None = field(default=None, repr=False)  # pinned signing key (KEYHASH TLV)
    firmware_confirmation_timeout: float = 300.0  # s to Confirm a new image before it is reverted

    #: every good poll gives its values a new SourceTimestamp, changed or not (default:
    #: only changes are written, an unchanged value keeps the time it last changed)
    refresh_timestamps: bool = False

@frozen
class HistoryConfig:
    """``[history]``: datalog sync into the history store under ``data_dir``."""

    enabled: bool = True
    retention_days: int = 0  # rows older than this are deleted; 0: kept forever
    backfill_days: int | None = None  # on first contact; None: all the meter holds
    #: fleet-wide, backfill pages in flight at once. 1 measured best with 100 meters on 2
    #: cores (bench_gateway --backfill: 100 % polls on time, as fast as 2 or 4 in flight,
    #: which left 75-40 % on time: pages are parsed and stored by one writer thread anyway)
    max_concurrent_pages: int = 1
    interval: float = 60.0  # s between checks for new rows once a meter is current


@frozen
class ServerConfig:
    host: str = "0.0.0.0"
    port: int = 4840
    application_uri: str = field(factory=lambda: f"urn:{socket.gethostname()}:emu-opcua")
    name: str = "EMU OPC UA Server"
    hostnames: tuple[str, ...] = ()  # DNS names / IPs for the certificate's subjectAltName
    pki_dir: Path = Path("pki")
    security_policies: tuple[str, ...] = ("None", "Basic256Sha256_Sign", "Basic256Sha256_SignAndEncrypt",
                                         "Aes256_Sha256_RsaPss_Sign", "Aes256_Sha256_RsaPss_SignAndEncrypt")
    allow_anonymous: bool = True  # anonymous sessions get the reader role
    trust_all_clients: bool = False  # accept any client certificate (else: pki/trusted only)
    users: tuple[UserConfig, ...] = ()
    meters: tuple[MeterConfig, ...] = ()
    max_history_continuation_points: int = 10  # per session; the oldest is dropped beyond
    source: str = "<config>"
    # limits, enforced and published in Server/ServerCapabilities (opcua/server_info.py)
    max_sessions: int = 100
    max_subscriptions: int = 500  # over all sessions
    max_monitored_items: int = 100_000  # over all subscriptions
    max_browse_continuation_points: int = 10  # per session
    max_history_continuation_points: int = 10  # per session
    shutdown_grace: float = 5.0  # s ServerStatus announces the shutdown before connections close
    #: the DI SoftwareUpdate AddIn on every meter (firmware update from OPC UA clients)
    firmware_update: bool = True
    data_dir: Path = Path("data")  # the history store and other state (Docker: /data)
    #: built by hand (tests, embedding): no history unless given; configuration files
    #: get HistoryConfig() (on) unless [history] enabled = false
    history: HistoryConfig = HistoryConfig(enabled=False)

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}/"

    def meter(self, name: str) -> MeterConfig:
        for m in self.meters:
            if m.name == name:
                return m
        raise KeyError(name)


def config_warnings(config: ServerConfig) -> list[str]:
    """Legal but probably unintended settings, one line each (``serve`` prints them)."""
    warnings: list[str] = []
    if not config.meters:
        warnings.append(f"{config.source}: no [[meters]] configured: the server has nothing to serve")
    seen: dict[tuple[str, int], str] = {}
    for m in config.meters:
        key = (m.host.lower(), m.http_port)
        if key in seen:
            warnings.append(f"{config.source}: meters {seen[key]!r} and {m.name!r} are both "
                            f"{m.host}:{m.http_port}: the same meter twice?")
        else:
            seen[key] = m.name
    return warnings


# --- reading ----------------------------------------------------------------------------
def load_config(path: str | Path, *, environ: Mapping[str, str] | None = None) -> ServerConfig:
    """Read and check a configuration file; relative paths in it are relative to its folder."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return parse_config(text, source=str(path), base_dir=path.parent, environ=environ)


def parse_config(text: str, *, source: str = "<config>", base_dir: Path | None = None,
                 environ: Mapping[str, str] | None = None) -> ServerConfig:
    """Parse TOML text; ``source`` names the file in error messages."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from exc
    return _Reader(source, base_dir or Path("."), os.environ if environ is None else environ).read(doc)


_SERVER_KEYS = {"host", "port", "endpoint", "application_uri", "name", "hostnames", "pki_dir",
                "security_policies", "allow_anonymous", "trust_all_clients", "max_sessions",
                "max_subscriptions", "max_monitored_items", "max_browse_continuation_points",
                "max_history_continuation_points", "shutdown_grace", "firmware_update",
                "data_dir"}
# max_sessions: asyncua refuses more than 1000 activated sessions itself
# (InternalSession.max_connections), so more cannot be promised
_LIMITS = {"max_sessions": (1, 1000), "max_subscriptions": (1, 100_000),
           "max_monitored_items": (1, 10_000_000), "max_browse_continuation_points": (1, 10_000),
           "max_history_continuation_points": (1, 10_000)}
_HISTORY_KEYS = {"enabled", "retention_days", "backfill_days", "max_concurrent_pages", "interval"}
_METER_KEYS = {"name", "host", "http_port", "modbus_port", "unit_id", "password", "password_env",
               "register_map", "fast_interval", "extremes_interval", "status_interval",
               "datalog_interval", "http_timeout", "modbus_timeout", "stale_after",
               "smp_port", "firmware_mtu", "firmware_reboot_timeout", "firmware_key_hash",
               "firmware_confirmation_timeout", "refresh_timestamps"}
_DEFAULT_KEYS = _METER_KEYS - {"name", "host"}
_USER_KEYS = {"name", "password_hash", "role"}
_INTERVALS = ("fast_interval", "extremes_interval", "status_interval", "datalog_interval",
              "http_timeout", "modbus_timeout", "stale_after")


class _Reader:
    def __init__(self, source: str, base_dir: Path, environ: Mapping[str, str]) -> None:
        self.source = source
        self.base_dir = base_dir
        self.environ = environ

    def fail(self, where: str, key: str | None, message: str) -> ConfigError:
        parts = [self.source, where] + ([key] if key else [])
        return ConfigError(": ".join(parts) + f": {message}")

    # generic checks ---------------------------------------------------------------------
    def table(self, doc: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
        value = doc.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(where, None, f"must be a table [{key}], got {_show(value)}")
        return value

    def unknown(self, table: Mapping[str, Any], allowed: set[str], where: str) -> None:
        for key in table:
            if key not in allowed:
                raise self.fail(where, key, f"unknown key (allowed: {', '.join(sorted(allowed))})")

    def string(self, table, key, where, default=None, *, required=False) -> str | None:
        if key not in table:
            if required:
                raise self.fail(where, key, "missing")
            return default
        value = table[key]
        if not isinstance(value, str) or not value.strip():
            raise self.fail(where, key, f"must be a non-empty string, got {_show(value)}")
        return value

    def boolean(self, table, key, where, default: bool) -> bool:
        value = table.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(where, key, f"must be true or false, got {_show(value)}")
        return value

    def integer(self, table, key, where, default: int, lo: int, hi: int) -> int:
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise self.fail(where, key, f"must be {lo}-{hi}, got {_show(value)}")
        return value

    def seconds(self, table, key, where, default: float) -> float:
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise self.fail(where, key, f"must be a number of seconds > 0, got {_show(value)}")
        return float(value)

    def strings(self, table, key, where, default: tuple[str, ...]) -> tuple[str, ...]:
        value = table.get(key, list(default))
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(where, key, f"must be a list of strings, got {_show(value)}")
        return tuple(value)

    def path(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    # sections ---------------------------------------------------------------------------
    def read(self, doc: Mapping[str, Any]) -> ServerConfig:
        self.unknown(doc, {"server", "users", "defaults", "meters", "history"}, "top level")
        kwargs = self.server(self.table(doc, "server", "server"))
        kwargs["history"] = self.history(self.table(doc, "history", "history"))
        users = self.users(doc.get("users", []))
        defaults = self.table(doc, "defaults", "defaults")
        self.unknown(defaults, _DEFAULT_KEYS, "defaults")
        meters = self.meters(doc.get("meters", []), defaults)
        if not kwargs.get("allow_anonymous", True) and not users:
            raise self.fail("server", "allow_anonymous",
                            "is false but no [[users]] are defined: nobody could connect")
        return ServerConfig(**kwargs, users=users, meters=meters, source=self.source)

    def server(self, t: Mapping[str, Any]) -> dict[str, Any]:
        where = "server"
        self.unknown(t, _SERVER_KEYS, where)
        out: dict[str, Any] = {}
        if "endpoint" in t:
            if "host" in t or "port" in t:
                raise self.fail(where, "endpoint", "give either endpoint or host/port, not both")
            host, port = self.endpoint(t["endpoint"], where)
        else:
            host = self.string(t, "host", where, "0.0.0.0")
            port = self.integer(t, "port", where, 4840, 1, 65535)
        out["host"], out["port"] = host, port
        if "application_uri" in t:
            uri = self.string(t, "application_uri", where)
            if ":" not in uri:
                raise self.fail(where, "application_uri", f"must be a URI such as urn:host:emu-opcua, got {uri!r}")
            out["application_uri"] = uri
        if "name" in t:
            out["name"] = self.string(t, "name", where)
        out["hostnames"] = self.strings(t, "hostnames", where, ())
        out["pki_dir"] = self.path(self.string(t, "pki_dir", where, "pki"))
        policies = self.strings(t, "security_policies", where, ServerConfig.__attrs_attrs__.security_policies.default)
        for p in policies:
            if p not in SECURITY_POLICIES:
                raise self.fail(where, "security_policies",
                                f"must be among {', '.join(SECURITY_POLICIES)}, got {p!r}")
        if not policies:
            raise self.fail(where, "security_policies", "must name at least one policy")
        out["security_policies"] = policies
        out["allow_anonymous"] = self.boolean(t, "allow_anonymous", where, True)
        out["trust_all_clients"] = self.boolean(t, "trust_all_clients", where, False)
        for key, (lo, hi) in _LIMITS.items():
            out[key] = self.integer(t, key, where, getattr(ServerConfig.__attrs_attrs__, key).default, lo, hi)
        grace = t.get("shutdown_grace", ServerConfig.__attrs_attrs__.shutdown_grace.default)
        if isinstance(grace, bool) or not isinstance(grace, (int, float)) or not 0 <= grace <= 3600:
            raise self.fail(where, "shutdown_grace", f"must be 0-3600 seconds, got {_show(grace)}")
        out["shutdown_grace"] = float(grace)
        out["firmware_update"] = self.boolean(t, "firmware_update", where, True)
        if "data_dir" in t:
            out["data_dir"] = self.path(self.string(t, "data_dir", where))
        return out

    def history(self, t: Mapping[str, Any]) -> HistoryConfig:
        where = "history"
        self.unknown(t, _HISTORY_KEYS, where)
        backfill = t.get("backfill_days")
        if backfill is not None:
            backfill = self.integer(t, "backfill_days", where, 0, 0, 100 * 366)
        return HistoryConfig(
            enabled=self.boolean(t, "enabled", where, True),
            retention_days=self.integer(t, "retention_days", where, 0, 0, 100 * 366),
            backfill_days=backfill,
            max_concurrent_pages=self.integer(t, "max_concurrent_pages", where, 1, 1, 1000),
            interval=self.seconds(t, "interval", where, 60.0),
        )

    def endpoint(self, value: Any, where: str) -> tuple[str, int]:
        from urllib.parse import urlparse

        if not isinstance(value, str) or not value.startswith("opc.tcp://"):
            raise self.fail(where, "endpoint", f"must be an opc.tcp:// URL, got {_show(value)}")
        url = urlparse(value)
        try:
            port = url.port or 4840
        except ValueError:
            raise self.fail(where, "endpoint", f"invalid port in {value!r}") from None
        if not url.hostname:
            raise self.fail(where, "endpoint", f"no host in {value!r}")
        return url.hostname, port

    def users(self, entries: Any) -> tuple[UserConfig, ...]:
        from emu_opcua.opcua.security import parse_password_hash

        if not isinstance(entries, list):
            raise self.fail("users", None, "must be an array of tables [[users]]")
        users: list[UserConfig] = []
        seen: set[str] = set()
        for i, t in enumerate(entries):
            where = f"users[{i}]"
            if not isinstance(t, dict):
                raise self.fail(where, None, f"must be a table, got {_show(t)}")
            name = self.string(t, "name", where, required=True)
            where = f"users[{i}] {name!r}"
            self.unknown(t, _USER_KEYS, where)
            if name in seen:
                raise self.fail(where, "name", "duplicate user name")
            seen.add(name)
            hashed = self.string(t, "password_hash", where, required=True)
            try:
                parse_password_hash(hashed)
            except ValueError as exc:
                raise self.fail(where, "password_hash",
                                f"{exc} (clear-text passwords are not accepted; "
                                "make one with 'emu-opcua hash-password')") from None
            role = t.get("role", "reader")
            if role not in ROLES:
                raise self.fail(where, "role", f"must be one of {', '.join(ROLES)}, got {_show(role)}")
            users.append(UserConfig(name=name, password_hash=hashed, role=role))
        return tuple(users)

    def meters(self, entries: Any, defaults: Mapping[str, Any]) -> tuple[MeterConfig, ...]:
        from emu_opcua.opcua.model import check_meter_name

        if not isinstance(entries, list):
            raise self.fail("meters", None, "must be an array of tables [[meters]]")
        if defaults:  # report a bad default once, as such, not as the first meter's mistake
            self.meter({**defaults, "host": "-"}, "defaults", "-")
        meters: list[MeterConfig] = []
        seen: set[str] = set()
        for i, t in enumerate(entries):
            where = f"meters[{i}]"
            if not isinstance(t, dict):
                raise self.fail(where, None, f"must be a table, got {_show(t)}")
            name = self.string(t, "name", where, required=True)
            where = f"meters[{i}] {name!r}"
            if (why := check_meter_name(name)) is not None:
                raise self.fail(where, "name", why)
            if name in seen:
                raise self.fail(where, "name", "duplicate meter name")
            seen.add(name)
            self.unknown(t, _METER_KEYS, where)
            if "password" in t and "password_env" in t:
                raise self.fail(where, "password_env", "give either password or password_env, not both")
            inherited = dict(defaults)
            if "password" in t or "password_env" in t:  # the meter's own choice replaces the default's
                inherited.pop("password", None)
                inherited.pop("password_env", None)
            merged = {**inherited, **t}
            meters.append(self.meter(merged, where, name))
        return tuple(meters)

    def meter(self, t: Mapping[str, Any], where: str, name: str) -> MeterConfig:
        host = self.string(t, "host", where, required=True)
        modbus_port = t.get("modbus_port", "auto")
        if modbus_port != "auto":
            modbus_port = self.integer(t, "modbus_port", where, 502, 1, 65535)
        password = self.string(t, "password", where)
        if "password_env" in t:
            if password is not None:
                raise self.fail(where, "password_env", "give either password or password_env, not both")
            var = self.string(t, "password_env", where)
            if var not in self.environ:
                raise self.fail(where, "password_env", f"environment variable {var} is not set")
            password = self.environ[var]
        if password is not None and len(password) > 20:
            raise self.fail(where, "password", "the meter accepts at most 20 characters")
        register_map = None
        if "register_map" in t:
            register_map = self.path(self.string(t, "register_map", where))
            if not register_map.is_file():
                raise self.fail(where, "register_map", f"file not found: {register_map}")
        key_hash = None
        if "firmware_key_hash" in t:
            text = self.string(t, "firmware_key_hash", where)
            try:
                key_hash = bytes.fromhex(text)
            except ValueError:
                key_hash = b""
            if len(key_hash) != 32:
                raise self.fail(where, "firmware_key_hash",
                                "must be the 64 hex digits of a SHA256 (imgtool's KEYHASH TLV), "
                                f"got {_show(text)}")
        return MeterConfig(
            name=name, host=host,
            smp_port=self.integer(t, "smp_port", where, 1337, 1, 65535),
            firmware_mtu=self.integer(t, "firmware_mtu", where, 628, 128, 65535),
            firmware_reboot_timeout=self.seconds(t, "firmware_reboot_timeout", where, 120.0),
            firmware_confirmation_timeout=self.seconds(t, "firmware_confirmation_timeout", where, 300.0),
            firmware_key_hash=key_hash,
            http_port=self.integer(t, "http_port", where, 80, 1, 65535),
            modbus_port=modbus_port,
            unit_id=self.integer(t, "unit_id", where, 1, 0, 255),
            password=password, register_map=register_map,
            refresh_timestamps=self.boolean(t, "refresh_timestamps", where, False),
            **{k: self.seconds(t, k, where, getattr(MeterConfig.__attrs_attrs__, k).default)
               for k in _INTERVALS},
        )


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)
