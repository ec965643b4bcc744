"""TOML configuration: a good file, defaults, and each error message naming file/entry/field."""

from pathlib import Path

import pytest

from emu_opcua.errors import ConfigError
from emu_opcua.opcua.config import MeterConfig, ServerConfig, load_config, parse_config
from emu_opcua.opcua.security import hash_password

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "meters.toml"
HASH = "scrypt$16384$8$1$c2FsdHNhbHRzYWx0c2FsdA==$" + "A" * 43 + "="


def parse(text: str, **kw) -> ServerConfig:
    return parse_config(text, source="meters.toml", base_dir=kw.pop("base_dir", Path("/etc/emu")), **kw)


GOOD = f"""
[server]
host = "127.0.0.1"
port = 4841
application_uri = "urn:plant:emu-opcua"
name = "Plant meters"
hostnames = ["opcua.example.org", "192.0.2.10"]
pki_dir = "pki"
security_policies = ["Basic256Sha256_SignAndEncrypt", "Aes256_Sha256_RsaPss_Sign"]
allow_anonymous = false

[[users]]
name = "alice"
password_hash = "{HASH}"
role = "admin"

[[users]]
name = "bob"
password_hash = "{HASH}"

[defaults]
fast_interval = 2
password_env = "EMU_PW"

[[meters]]
name = "boiler"
host = "192.0.2.21"

[[meters]]
name = "hall-3"
host = "192.0.2.22"
http_port = 8080
modbus_port = 503
unit_id = 2
fast_interval = 0.5
stale_after = 12
"""


def test_good_file():
    cfg = parse(GOOD, environ={"EMU_PW": "secret"})
    assert cfg.endpoint == "opc.tcp://127.0.0.1:4841/"
    assert cfg.application_uri == "urn:plant:emu-opcua" and cfg.name == "Plant meters"
    assert cfg.hostnames == ("opcua.example.org", "192.0.2.10")
    assert cfg.pki_dir == Path("/etc/emu/pki")
    assert cfg.security_policies == ("Basic256Sha256_SignAndEncrypt", "Aes256_Sha256_RsaPss_Sign")
    assert cfg.allow_anonymous is False
    assert [(u.name, u.role) for u in cfg.users] == [("alice", "admin"), ("bob", "reader")]
    boiler, hall = cfg.meters
    assert boiler == MeterConfig(name="boiler", host="192.0.2.21", password="secret", fast_interval=2.0)
    assert boiler.modbus_port == "auto" and boiler.http_port == 80 and boiler.unit_id == 1
    assert (hall.http_port, hall.modbus_port, hall.unit_id) == (8080, 503, 2)
    assert (hall.fast_interval, hall.stale_after, hall.password) == (0.5, 12.0, "secret")
    assert cfg.meter("hall-3") is hall
    assert "secret" not in repr(cfg) and HASH not in repr(cfg)


def test_empty_file_gives_defaults():
    cfg = parse("")
    assert (cfg.host, cfg.port, cfg.allow_anonymous, cfg.meters, cfg.users) == ("0.0.0.0", 4840, True, (), ())
    assert "None" in cfg.security_policies


def test_endpoint_url():
    cfg = parse('[server]\nendpoint = "opc.tcp://0.0.0.0:4850/"')
    assert (cfg.host, cfg.port) == ("0.0.0.0", 4850)


def test_example_file_loads():
    cfg = load_config(EXAMPLE, environ={"EMU_METER_PASSWORD": "from-env"})
    assert len(cfg.meters) >= 2 and cfg.source == str(EXAMPLE)
    assert all(m.host.startswith("192.0.2.") for m in cfg.meters)  # documentation addresses
    assert any(m.password == "from-env" for m in cfg.meters)


def test_example_file_names_a_missing_password_variable():
    with pytest.raises(ConfigError, match="EMU_METER_PASSWORD"):
        load_config(EXAMPLE, environ={})


def test_refresh_timestamps_per_meter_or_for_all():
    assert parse(METER).meters[0].refresh_timestamps is False
    cfg = parse("[defaults]\nrefresh_timestamps = true\n" + METER + METER.replace('"a"', '"b"')
                + "refresh_timestamps = false\n")
    assert [m.refresh_timestamps for m in cfg.meters] == [True, False]


def test_hash_from_hash_password_is_accepted():
    cfg = parse(f'[[users]]\nname = "carol"\npassword_hash = "{hash_password("pw")}"\nrole = "operator"')
    assert cfg.users[0].role == "operator"


METER = '[[meters]]\nname = "a"\nhost = "192.0.2.1"\n'


@pytest.mark.parametrize("text, message", [
    (METER + METER.replace('"a"', '"b"') + METER.replace('"a"', '"boiler"') + "http_port = 70000\n",
     "meters.toml: meters[2] 'boiler': http_port: must be 1-65535, got 70000"),
    (METER + METER, "meters.toml: meters[1] 'a': name: duplicate meter name"),
    ('[[meters]]\nname = "a.b"\nhost = "h"\n', "meters.toml: meters[0] 'a.b': name: must be 1-64 characters"),
    ('[[meters]]\nname = "Meters"\nhost = "h"\n', "meters.toml: meters[0] 'Meters': name: 'Meters' is reserved"),
    ('[[meters]]\nhost = "h"\n', "meters.toml: meters[0]: name: missing"),
    ('[[meters]]\nname = "a"\n', "meters.toml: meters[0] 'a': host: missing"),
    (METER + 'modbus_port = "manual"\n', "meters.toml: meters[0] 'a': modbus_port: must be 1-65535, got 'manual'"),
    (METER + "unit_id = 300\n", "meters.toml: meters[0] 'a': unit_id: must be 0-255, got 300"),
    (METER + "fast_interval = 0\n", "meters.toml: meters[0] 'a': fast_interval: must be a number of seconds > 0"),
    (METER + "stale_after = -1\n", "meters.toml: meters[0] 'a': stale_after: must be a number of seconds > 0"),
    (METER + "pasword = 'x'\n", "meters.toml: meters[0] 'a': pasword: unknown key"),
    (METER + 'password_env = "NOPE_NOT_SET"\n',
     "meters.toml: meters[0] 'a': password_env: environment variable NOPE_NOT_SET is not set"),
    (METER + 'password = "123456789012345678901"\n',
     "meters.toml: meters[0] 'a': password: the meter accepts at most 20 characters"),
    (METER + 'register_map = "missing.toml"\n', "meters.toml: meters[0] 'a': register_map: file not found"),
    ("[defaults]\nhttp_timeout = 0\n" + METER, "meters.toml: defaults: http_timeout: must be a number of seconds > 0"),
    ("[defaults]\nname = 'x'\n", "meters.toml: defaults: name: unknown key"),
    (METER + "refresh_timestamps = 1\n", "meters.toml: meters[0] 'a': refresh_timestamps: must be true or false, got 1"),
    ("[server]\nport = 0\n", "meters.toml: server: port: must be 1-65535, got 0"),
    ("[server]\nsecurity_policies = ['Basic128Rsa15']\n",
     "meters.toml: server: security_policies: must be among None, Basic256Sha256_Sign"),
    ("[server]\nallow_anonymous = 'no'\n", "meters.toml: server: allow_anonymous: must be true or false, got 'no'"),
    ("[server]\nallow_anonymous = false\n", "meters.toml: server: allow_anonymous: is false but no [[users]]"),
    ("[server]\nendpoint = 'http://x'\n", "meters.toml: server: endpoint: must be an opc.tcp:// URL"),
    ("[server]\napplication_uri = 'plain'\n", "meters.toml: server: application_uri: must be a URI"),
    ('[[users]]\nname = "eve"\npassword_hash = "hunter2"\n',
     "meters.toml: users[0] 'eve': password_hash: not a password hash"),
    (f'[[users]]\nname = "eve"\npassword_hash = "{HASH}"\nrole = "root"\n',
     "meters.toml: users[0] 'eve': role: must be one of reader, operator, admin, got 'root'"),
    (f'[[users]]\nname = "eve"\npassword_hash = "{HASH}"\n' * 2, "meters.toml: users[1] 'eve': name: duplicate"),
    ("[sever]\n", "meters.toml: top level: sever: unknown key"),
    ("meters = 3\n", "meters.toml: meters: must be an array of tables"),
    ("[server\n", "meters.toml: invalid TOML"),
])
def test_errors_name_file_entry_and_field(text, message):
    with pytest.raises(ConfigError) as info:
        parse(text, environ={})
    assert str(info.value).startswith(message), str(info.value)


def test_register_map_relative_to_config_file(tmp_path):
    (tmp_path / "map.toml").write_text("")
    cfg_file = tmp_path / "meters.toml"
    cfg_file.write_text(METER + 'register_map = "map.toml"\n')
    assert load_config(cfg_file).meters[0].register_map == tmp_path / "map.toml"


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match="missing.toml: cannot read"):
        load_config(tmp_path / "missing.toml")


# --- server limits, shutdown grace, warnings -------------------------------------------------
def test_server_limits_and_shutdown_grace():
    default = parse("")
    assert (default.max_sessions, default.max_subscriptions, default.max_monitored_items,
            default.max_browse_continuation_points, default.max_history_continuation_points,
            default.shutdown_grace) == (100, 500, 100_000, 10, 10, 5.0)
    config = parse("[server]\nmax_sessions = 3\nmax_subscriptions = 4\nmax_monitored_items = 5\n"
                   "max_browse_continuation_points = 6\nmax_history_continuation_points = 7\nshutdown_grace = 0\n")
    assert (config.max_sessions, config.max_subscriptions, config.max_monitored_items,
            config.max_browse_continuation_points, config.max_history_continuation_points,
            config.shutdown_grace) == (3, 4, 5, 6, 7, 0.0)


@pytest.mark.parametrize("line, message", [
    ("max_sessions = 0", "server: max_sessions: must be 1-1000, got 0"),
    ("max_monitored_items = true", "server: max_monitored_items: must be 1-10000000, got True"),
    ("shutdown_grace = -1", "server: shutdown_grace: must be 0-3600 seconds, got -1"),
])
def test_bad_server_limits(line, message):
    with pytest.raises(ConfigError) as info:
        parse(f"[server]\n{line}\n")
    assert str(info.value) == f"meters.toml: {message}"


def test_config_warnings():
    from emu_opcua.opcua.config import config_warnings

    assert config_warnings(parse("")) == ["meters.toml: no [[meters]] configured: the server has nothing to serve"]
    twice = parse('[[meters]]\nname = "a"\nhost = "192.0.2.5"\n[[meters]]\nname = "b"\nhost = "192.0.2.5"\n'
                  '[[meters]]\nname = "c"\nhost = "192.0.2.5"\nhttp_port = 8080\n')
    assert config_warnings(twice) == ["meters.toml: meters 'a' and 'b' are both 192.0.2.5:80: the same meter twice?"]
    assert config_warnings(load_config(EXAMPLE, environ={"EMU_METER_PASSWORD": "pw"})) == []
