"""Certificates, PKI folders, users and roles of the OPC UA server.

PKI layout (``pki_dir``)::

    own/cert.der  own/key.pem   the server's self-signed certificate, made on first start
    trusted/                    client certificates (DER or PEM) allowed to connect
    rejected/                   certificates of clients that were refused; move one to
                                trusted/ to allow that client (no restart needed)

Roles, mapped onto asyncua's permission check (which sees every request type):

    reader    read, browse, subscribe, history read     (anonymous sessions get this role)
    operator  reader + call methods
    admin     everything, including writes and address-space changes

Write and Call requests are let through for every role: each item is decided on its own
(``services.write_refusal``: BadNotWritable / BadUserAccessDenied per item; ``methods``:
each method's declared minimum role and security mode), not by a fault for the request.

Passwords are stored as ``scrypt$n$r$p$salt$hash`` (or ``pbkdf2_sha256$iterations$salt$hash``),
base64 salt and hash, compared in constant time; :func:`hash_password` makes them.
"""

from __future__ import annotations

import base64
import contextvars
import datetime
import hashlib
import hmac
import ipaddress
import logging
import os
import secrets
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from asyncua import Server, ua
from asyncua.crypto.permission_rules import ADMIN_TYPES, USER_TYPES, PermissionRuleset, User, UserRole
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

if TYPE_CHECKING:
    from emu_opcua.opcua.config import ServerConfig, UserConfig

log = logging.getLogger(__name__)

Role = Literal["reader", "operator", "admin"]

POLICY_TYPES: dict[str, ua.SecurityPolicyType] = {
    "None": ua.SecurityPolicyType.NoSecurity,
    "Basic256Sha256_Sign": ua.SecurityPolicyType.Basic256Sha256_Sign,
    "Basic256Sha256_SignAndEncrypt": ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    "Aes256_Sha256_RsaPss_Sign": ua.SecurityPolicyType.Aes256Sha256RsaPss_Sign,
    "Aes256_Sha256_RsaPss_SignAndEncrypt": ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
}


# --- passwords ------------------------------------------------------------------------------
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
PBKDF2_ITERATIONS = 600_000
_DKLEN = 32


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, method: Literal["scrypt", "pbkdf2"] = "scrypt") -> str:
    """A salted hash of ``password`` for ``[[users]] password_hash``."""
    if not password:
        raise ValueError("empty password")
    salt = secrets.token_bytes(16)
    if method == "scrypt":
        digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=_DKLEN)
        return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"
    if method == "pbkdf2":
        digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, PBKDF2_ITERATIONS, _DKLEN)
        return f"pbkdf2_sha256${PBKDF2_ITERATIONS}${_b64(salt)}${_b64(digest)}"
    raise ValueError(f"unknown method {method!r}")


@dataclass(frozen=True)
class _ParsedHash:
    method: str
    params: tuple[int, ...]
    salt: bytes
    digest: bytes


def parse_password_hash(text: str) -> _ParsedHash:
    """Split a stored hash; ValueError when ``text`` is not one of ours."""
    parts = text.split("$")
    try:
        if parts[0] == "scrypt" and len(parts) == 6:
            n, r, p = (int(x) for x in parts[1:4])
            if n < 2 or n & (n - 1) or r < 1 or p < 1:
                raise ValueError
            return _ParsedHash("scrypt", (n, r, p), base64.b64decode(parts[4], validate=True),
                               base64.b64decode(parts[5], validate=True))
        if parts[0] == "pbkdf2_sha256" and len(parts) == 4:
            iterations = int(parts[1])
            if iterations < 1:
                raise ValueError
            return _ParsedHash("pbkdf2_sha256", (iterations,), base64.b64decode(parts[2], validate=True),
                               base64.b64decode(parts[3], validate=True))
    except ValueError:
        pass
    raise ValueError("not a password hash of the form scrypt$n$r$p$salt$hash or pbkdf2_sha256$iterations$salt$hash")


def verify_password(password: str, password_hash: str) -> bool:
    """True when ``password`` matches ``password_hash``; constant-time comparison."""
    try:
        h = parse_password_hash(password_hash)
    except ValueError:
        return False
    if h.method == "scrypt":
        n, r, p = h.params
        digest = hashlib.scrypt(password.encode(), salt=h.salt, n=n, r=r, p=p, dklen=len(h.digest),
                                maxmem=256 * n * r * p + 1024 * 1024)
    else:
        digest = hashlib.pbkdf2_hmac("sha256", password.encode(), h.salt, h.params[0], len(h.digest))
    return hmac.compare_digest(digest, h.digest)


# --- users and roles ------------------------------------------------------------------------
@dataclass
class EmuUser(User):
    """An asyncua session user carrying our role."""

    emu_role: Role = "reader"


_ASYNCUA_ROLE = {"reader": UserRole.User, "operator": UserRole.User, "admin": UserRole.Admin}


def make_user(name: str | None, role: Role) -> EmuUser:
    return EmuUser(role=_ASYNCUA_ROLE[role], name=name, emu_role=role)


#: Roles from least to most rights; a method's requirement names the least it accepts.
ROLE_ORDER: tuple[Role, ...] = ("reader", "operator", "admin")
_RANK = {role: i for i, role in enumerate(ROLE_ORDER)}


def role_at_least(role: Role, minimum: Role) -> bool:
    return _RANK[role] >= _RANK[minimum]


def may_write(role: Role) -> bool:
    """Whether a role may write attributes (where the node allows writing at all)."""
    return role == "admin"


def role_of(user: User | None) -> Role:
    """Our role of an asyncua session user (for method handlers that check permissions)."""
    if isinstance(user, EmuUser):
        return user.emu_role
    if user is not None and user.role == UserRole.Admin:
        return "admin"
    return "reader"


class EmuUserManager:
    """asyncua user manager: configured users with hashed passwords; anonymous = reader."""

    def __init__(self, users: Iterable[UserConfig], *, allow_anonymous: bool = True) -> None:
        self._users = {u.name: u for u in users}
        self.allow_anonymous = allow_anonymous
        # spent on unknown user names so that they take as long as wrong passwords
        self._dummy_hash = hash_password(secrets.token_hex(8))

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> User | None:
        # ``certificate`` is the secure channel's client certificate (X509 user tokens are
        # not offered, asyncua refuses them before asking us): no user name = anonymous.
        if username is None:
            return make_user(None, "reader") if self.allow_anonymous else None
        if password is None:
            return None
        if isinstance(password, bytes):
            password = password.decode("utf-8", errors="replace")
        user = self._users.get(username)
        if user is None:
            verify_password(password, self._dummy_hash)
            log.warning("login refused: unknown user %r", username)
            return None
        if not verify_password(password, user.password_hash):
            log.warning("login refused: wrong password for user %r", username)
            return None
        return make_user(username, user.role)


def _ids(ids: Iterable[int]) -> frozenset[ua.NodeId]:
    return frozenset(ua.NodeId(i) for i in ids)


_WRITE_TYPES = _ids([ua.ObjectIds.WriteRequest_Encoding_DefaultBinary,
                     ua.ObjectIds.HistoryUpdateRequest_Encoding_DefaultBinary])
_HISTORY_UPDATE_TYPES = _ids([ua.ObjectIds.HistoryUpdateRequest_Encoding_DefaultBinary])
# Write and Call: refused per item (see the module docstring); BrowseNext is not in
# asyncua's list (it does not implement it; services.ServiceProcessor does)
_READER = (_ids(USER_TYPES) - _HISTORY_UPDATE_TYPES) | _ids([ua.ObjectIds.BrowseNextRequest_Encoding_DefaultBinary])
PERMISSIONS: dict[Role, frozenset[ua.NodeId]] = {
    "reader": _READER,
    "operator": _READER,
    "admin": _READER | _ids(ADMIN_TYPES) | _WRITE_TYPES,
}


class RolePermissionRuleset(PermissionRuleset):
    """Which request types each role may send (checked by asyncua for every request)."""

    def check_validity(self, user: User, action_type_id: ua.NodeId, body: Any) -> bool:
        if not isinstance(user, EmuUser):
            # a session not activated through EmuUserManager: nothing but the handshake
            return False
        return action_type_id in PERMISSIONS[user.emu_role]


# --- certificates ---------------------------------------------------------------------------
@dataclass(frozen=True)
class PkiPaths:
    root: Path

    @property
    def cert(self) -> Path:
        return self.root / "own" / "cert.der"

    @property
    def key(self) -> Path:
        return self.root / "own" / "key.pem"

    @property
    def trusted(self) -> Path:
        return self.root / "trusted"

    @property
    def rejected(self) -> Path:
        return self.root / "rejected"

    def create(self) -> None:
        for d in (self.root / "own", self.trusted, self.rejected):
            d.mkdir(parents=True, exist_ok=True)


def _general_names(application_uri: str, hostnames: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(application_uri)]
    for host in hostnames:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def generate_certificate(application_uri: str, hostnames: Sequence[str], common_name: str, *,
                         days: int = 3650, client: bool = False,
                         key: rsa.RSAPrivateKey | None = None) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    """A self-signed OPC UA application certificate (OPC 10000-6, 6.2.2)."""
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "emu-opcua")])
    now = datetime.datetime.now(datetime.timezone.utc)
    usage = [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [ExtendedKeyUsageOID.SERVER_AUTH,
                                                              ExtendedKeyUsageOID.CLIENT_AUTH]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(_general_names(application_uri, hostnames)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=True,
                                     data_encipherment=True, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def default_hostnames() -> list[str]:
    import socket

    names = [socket.gethostname()]
    try:
        fqdn = socket.getfqdn()
        if fqdn and fqdn not in names:
            names.append(fqdn)
    except OSError:
        pass
    return names + ["localhost", "127.0.0.1"]


def _san_matches(cert: x509.Certificate, application_uri: str, hostnames: Iterable[str]) -> bool:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    if application_uri not in san.get_values_for_type(x509.UniformResourceIdentifier):
        return False
    present = {str(v) for v in san.get_values_for_type(x509.IPAddress)} | set(san.get_values_for_type(x509.DNSName))
    return all(str(ipaddress.ip_address(h)) in present if _is_ip(h) else h in present for h in hostnames)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def ensure_server_certificate(pki_dir: Path | str, application_uri: str, hostnames: Sequence[str],
                              common_name: str = "emu-opcua") -> PkiPaths:
    """Create the PKI folders and, unless a matching one exists, the server certificate + key.

    An existing certificate is kept while its subjectAltName holds the application URI and
    every host name; otherwise it is replaced (clients must then trust the new one).
    """
    paths = PkiPaths(Path(pki_dir))
    paths.create()
    hostnames = list(hostnames) or default_hostnames()
    if paths.cert.exists() and paths.key.exists():
        cert = x509.load_der_x509_certificate(paths.cert.read_bytes())
        if _san_matches(cert, application_uri, hostnames):
            return paths
        log.warning("server certificate %s does not name %s and %s: making a new one",
                    paths.cert, application_uri, ", ".join(hostnames))
    cert, key = generate_certificate(application_uri, hostnames, common_name)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    fd = os.open(paths.key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    log.info("created server certificate %s for %s (%s)", paths.cert, application_uri, ", ".join(hostnames))
    return paths


NONE_POLICY_URI = "http://opcfoundation.org/UA/SecurityPolicy#None"

#: The SecurityPolicy URI of the channel whose request is being processed; set by
#: ``channel_guard.GuardedUaProcessor`` around each request, so that the certificate
#: validator, which asyncua calls with the certificate only, knows the channel.
CHANNEL_POLICY_URI: contextvars.ContextVar[str | None] = contextvars.ContextVar("channel_policy_uri",
                                                                                 default=None)


class ClientCertificateValidator:
    """Accept client certificates found in ``trusted/``; copy refused ones to ``rejected/``.

    The trusted folder is re-read whenever it changes, so moving a certificate from
    rejected/ to trusted/ takes effect at the client's next connection.
    """

    OPTIONS = (CertificateValidatorOptions.TIME_RANGE | CertificateValidatorOptions.URI
               | CertificateValidatorOptions.TRUSTED | CertificateValidatorOptions.REVOKED
               | CertificateValidatorOptions.PEER_CLIENT)
    #: when the channel opens: the client's ApplicationUri comes only with CreateSession
    CHANNEL_OPTIONS = OPTIONS & ~CertificateValidatorOptions.URI

    def __init__(self, paths: PkiPaths) -> None:
        self.paths = paths
        self._validator = CertificateValidator(self.OPTIONS, TrustStore([paths.trusted], []))
        self._channel_validator = CertificateValidator(self.CHANNEL_OPTIONS, TrustStore([paths.trusted], []))
        self._stamp: tuple | None = None

    def _folder_stamp(self) -> tuple:
        return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in self.paths.trusted.iterdir()
                            if p.suffix.lower() in (".der", ".pem")))

    async def _reload(self) -> None:
        stamp = self._folder_stamp()
        if stamp == self._stamp:
            return
        store = TrustStore([self.paths.trusted], [])
        if stamp:  # an empty store cannot be loaded; unloaded, it trusts nothing
            await store.load()
        self._validator = CertificateValidator(self.OPTIONS, store)
        self._channel_validator = CertificateValidator(self.CHANNEL_OPTIONS, store)
        self._stamp = stamp

    async def check_channel(self, cert: x509.Certificate) -> None:
        """Validate the certificate of a client opening a secured channel (OPC 10000-4 5.5.2);
        a refused one is copied to rejected/ like at CreateSession."""
        await self._reload()
        app = ua.ApplicationDescription(ApplicationType=ua.ApplicationType.Client)
        try:
            await self._channel_validator.validate(cert, app)
        except Exception:
            self._reject(cert, app)
            raise

    async def __call__(self, cert: x509.Certificate, app_description: ua.ApplicationDescription) -> None:
        if CHANNEL_POLICY_URI.get() == NONE_POLICY_URI:
            # OPC 10000-4 5.6.2.2: without security the server ignores the client
            # certificate (node-opcua and UaExpert send one anyway). Refusing it would
            # lock such clients out of an endpoint the configuration allows.
            return
        await self._reload()
        try:
            await self._validator.validate(cert, app_description)
        except Exception:
            self._reject(cert, app_description)
            raise

    def _reject(self, cert: x509.Certificate, app_description: ua.ApplicationDescription) -> None:
        thumb = cert.fingerprint(hashes.SHA1()).hex()
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        label = "".join(c if c.isalnum() or c in "-_." else "_" for c in (str(cn[0].value) if cn else "client"))
        target = self.paths.rejected / f"{label} [{thumb}].der"
        try:
            target.write_bytes(cert.public_bytes(serialization.Encoding.DER))
        except OSError as exc:
            log.warning("cannot store rejected certificate %s: %s", target, exc)
        log.warning("client certificate of %s (%s) refused; to allow it, move %s to %s",
                    app_description.ApplicationUri or "a client", label, target, self.paths.trusted)


async def configure_security(server: Server, config: ServerConfig) -> PkiPaths:
    """Apply the configuration's certificate, security policies, users and client trust.

    Call after ``await server.init()`` and before ``await server.start()``. Sets the
    application URI and name too, since the certificate must carry the same URI.
    """
    paths = ensure_server_certificate(config.pki_dir, config.application_uri, config.hostnames, config.name)
    await server.set_application_uri(config.application_uri)
    server.set_server_name(config.name)
    await server.load_certificate(str(paths.cert))
    await server.load_private_key(str(paths.key))
    server.set_security_policy([POLICY_TYPES[p] for p in config.security_policies],
                               permission_ruleset=RolePermissionRuleset())
    tokens: list[type] = []
    if config.allow_anonymous:
        tokens.append(ua.AnonymousIdentityToken)
    if config.users:
        tokens.append(ua.UserNameIdentityToken)
    server.set_identity_tokens(tokens)
    server.iserver.set_user_manager(EmuUserManager(config.users, allow_anonymous=config.allow_anonymous))
    if not config.trust_all_clients:
        validator = ClientCertificateValidator(paths)
        server.set_certificate_validator(validator)
        guard = getattr(server, "guard", None)  # a channel_guard.GuardedServer
        if guard is not None:
            guard.certificate_check = validator.check_channel
    return paths


def read_new_password(stdin: Any = None) -> str:
    """The password to hash: asked twice on a terminal; the first line when piped
    (``echo pw | emu-opcua hash-password``), with no prompt and no getpass warning."""
    import getpass

    stdin = sys.stdin if stdin is None else stdin
    if not stdin.isatty():
        line = stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    password = getpass.getpass("password: ")
    if password != getpass.getpass("again: "):
        raise ValueError("the passwords differ")
    return password


def add_arguments(parser: Any) -> None:
    """``emu-opcua hash-password``"""
    parser.add_argument("--method", choices=("scrypt", "pbkdf2"), default="scrypt",
                        help="hash function (default scrypt)")


def run(args: Any) -> int:
    try:
        password = read_new_password()
        print(hash_password(password, method=args.method))
    except (ValueError, EOFError) as exc:
        print(f"emu-opcua hash-password: {exc or 'no password given'}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m emu_opcua.opcua.security``, as ``emu-opcua hash-password``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m emu_opcua.opcua.security",
                                     description="print a password hash for [[users]] password_hash")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
