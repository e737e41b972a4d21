"""The secured variant of the local broker: SASL_SSL with SCRAM users, TLS, and ACLs enforced.

Why: every production cluster authenticates its clients and authorizes what they touch, and an
engine that was only ever run on a PLAINTEXT broker will meet its first ``GROUP_AUTHORIZATION_FAILED``
in production. ``python -m durable_kafka.connectors.broker up --secure`` (``make broker-up SECURE=1``)
runs the same single-node KRaft broker as the plaintext one, with:

* a ``SASL_SSL`` listener for clients and inter-broker traffic: SCRAM-SHA-512 over TLS, the
  broker certificate signed by a CA made here (``tls/ca.pem``), valid for ``localhost`` and
  ``127.0.0.1`` so that librdkafka's default hostname verification passes;
* a ``CONTROLLER`` listener on SASL_PLAINTEXT/PLAIN (loopback only) whose principal is the admin:
  SCRAM cannot authenticate the controller (its credentials live in the metadata the controller
  serves), and a PLAINTEXT controller listener would need ``User:ANONYMOUS`` as a super user;
* ``StandardAuthorizer`` with ``super.users=User:admin`` and no access without an ACL;
* SCRAM users created when storage is formatted (``--add-scram``), so no running cluster is
  needed to create the first user. The users are ``admin`` and the service principals in
  :data:`SERVICE_USERS`; passwords are random, made once, kept in the state directory.

Everything lives in the broker's state directory: ``tls/`` (CA, broker key and certificate, PEM
only: no keytool, no JKS), ``clients/<user>.properties`` (librdkafka names, for
``--kafka-config``) and ``clients/<user>-java.properties`` (the same, in the names Kafka's own
``kafka-*.sh`` tools expect). Deleting the state directory makes new ones.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

from durable_kafka.errors import BrokerError

__all__ = [
    "ADMIN_USER",
    "SCRAM_MECHANISM",
    "SERVICE_USERS",
    "client_config",
    "client_properties_file",
    "format_arguments",
    "prepare",
    "server_settings",
]

ADMIN_USER = "admin"
#: Service principals made alongside the admin; ACLs decide what each may touch.
SERVICE_USERS = ("svc-a", "svc-b")
SCRAM_MECHANISM = "SCRAM-SHA-512"
_CERT_DAYS = 825
_OPENSSL_TIMEOUT_S = 60


def _tls_dir(state_dir: Path) -> Path:
    return state_dir / "tls"


def _clients_dir(state_dir: Path) -> Path:
    return state_dir / "clients"


def ca_file(state_dir: Path) -> Path:
    """The CA certificate clients must trust (``ssl.ca.location``)."""
    return _tls_dir(state_dir) / "ca.pem"


def _keystore_file(state_dir: Path) -> Path:
    return _tls_dir(state_dir) / "broker-keystore.pem"


def _password_file(state_dir: Path, user: str) -> Path:
    return state_dir / "credentials" / f"{user}.password"


def password(state_dir: Path, user: str) -> str:
    """The SCRAM password of ``user`` on the broker kept in ``state_dir``."""
    try:
        return _password_file(Path(state_dir), user).read_text().strip()
    except OSError as exc:
        raise BrokerError(f"no password for user {user!r} in {state_dir}: start the secure broker "
                          "first (make broker-up SECURE=1)") from exc


def client_properties_file(state_dir: Path, user: str, java: bool = False) -> Path:
    """``clients/<user>.properties`` (librdkafka names) or ``<user>-java.properties``."""
    return _clients_dir(Path(state_dir)) / (f"{user}-java.properties" if java else f"{user}.properties")


def client_config(state_dir: Path, user: str = ADMIN_USER) -> dict[str, Any]:
    """librdkafka security settings for ``user`` (bootstrap not included)."""
    state_dir = Path(state_dir)
    return {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": SCRAM_MECHANISM,
        "sasl.username": user,
        "sasl.password": password(state_dir, user),
        "ssl.ca.location": str(ca_file(state_dir)),
    }


# ---------------------------------------------------------------------------------------------
# preparation: certificates, passwords, client files


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise BrokerError("openssl is not on PATH; the secure broker needs it to make its certificates")
    proc = subprocess.run([openssl, *args], cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=_OPENSSL_TIMEOUT_S)
    if proc.returncode != 0:
        raise BrokerError(f"openssl {args[0]} failed (exit {proc.returncode}): {proc.stderr[-2000:]}")


def _make_certificates(tls: Path) -> None:
    """A CA and a broker certificate for localhost/127.0.0.1, made once (kept across restarts)."""
    if _keystore_file(tls.parent).is_file() and (tls / "ca.pem").is_file():
        return
    tls.mkdir(parents=True, exist_ok=True)
    tls.chmod(0o700)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", str(_CERT_DAYS), "-subj", "/CN=durable-kafka local CA", cwd=tls)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key", "-out", "broker.csr",
             "-subj", "/CN=localhost", cwd=tls)
    (tls / "broker.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                                    "extendedKeyUsage=serverAuth,clientAuth\n")
    _openssl("x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "broker.pem", "-days", str(_CERT_DAYS), "-extfile", "broker.ext", cwd=tls)
    # Kafka's PEM keystore: the PKCS#8 key followed by the certificate chain, in one file
    keystore = (tls / "broker.key").read_text() + (tls / "broker.pem").read_text() + (tls / "ca.pem").read_text()
    target = tls / "broker-keystore.pem"
    target.write_text(keystore)
    target.chmod(0o600)


def _make_passwords(state_dir: Path, users: tuple[str, ...]) -> None:
    for user in users:
        path = _password_file(state_dir, user)
        if path.is_file():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        path.write_text(secrets.token_urlsafe(18) + "\n")
        path.chmod(0o600)


def _write_client_files(state_dir: Path, bootstrap: str, users: tuple[str, ...]) -> None:
    clients = _clients_dir(state_dir)
    clients.mkdir(parents=True, exist_ok=True)
    clients.chmod(0o700)
    ca = ca_file(state_dir)
    for user in users:
        secret = password(state_dir, user)
        native = [
            "# librdkafka names; use with --kafka-config or DURABLE_KAFKA_CONFIG_FILE",
            f"bootstrap.servers={bootstrap}",
            "security.protocol=SASL_SSL",
            f"sasl.mechanism={SCRAM_MECHANISM}",
            f"sasl.username={user}",
            f"sasl.password={secret}",
            f"ssl.ca.location={ca}",
        ]
        java = [
            "# Kafka's Java tools (kafka-acls.sh --command-config ...); durable-kafka reads it too",
            f"bootstrap.servers={bootstrap}",
            "security.protocol=SASL_SSL",
            f"sasl.mechanism={SCRAM_MECHANISM}",
            "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{user}" password="{secret}";',
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={ca}",
        ]
        for path, lines in ((client_properties_file(state_dir, user), native),
                            (client_properties_file(state_dir, user, java=True), java)):
            path.write_text("\n".join(lines) + "\n")
            path.chmod(0o600)


def prepare(state_dir: Path, bootstrap: str) -> None:
    """Make (once) the certificates and passwords, and (re)write the client property files."""
    state_dir = Path(state_dir)
    users = (ADMIN_USER, *SERVICE_USERS)
    _make_certificates(_tls_dir(state_dir))
    _make_passwords(state_dir, users)
    _write_client_files(state_dir, bootstrap, users)


# ---------------------------------------------------------------------------------------------
# broker settings


def _jaas(module: str, user: str, secret: str, extra: str = "") -> str:
    return f'org.apache.kafka.common.security.{module} required username="{user}" password="{secret}"{extra};'


def server_settings(state_dir: Path, host: str, port: int, controller_port: int) -> dict[str, str]:
    """The listener, TLS, SASL and authorizer lines of server.properties for the secure broker."""
    state_dir = Path(state_dir)
    admin_secret = password(state_dir, ADMIN_USER)
    return {
        "listeners": f"SASL_SSL://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"SASL_SSL://{host}:{port}",
        "listener.security.protocol.map": "CONTROLLER:SASL_PLAINTEXT,SASL_SSL:SASL_SSL",
        "inter.broker.listener.name": "SASL_SSL",
        "sasl.enabled.mechanisms": SCRAM_MECHANISM,
        "sasl.mechanism.inter.broker.protocol": SCRAM_MECHANISM,
        "listener.name.sasl_ssl.sasl.enabled.mechanisms": SCRAM_MECHANISM,
        f"listener.name.sasl_ssl.{SCRAM_MECHANISM.lower()}.sasl.jaas.config":
            _jaas("scram.ScramLoginModule", ADMIN_USER, admin_secret),
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config":
            _jaas("plain.PlainLoginModule", ADMIN_USER, admin_secret, f' user_{ADMIN_USER}="{admin_secret}"'),
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(_keystore_file(state_dir)),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(ca_file(state_dir)),
        "ssl.client.auth": "none",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{ADMIN_USER}",
        "allow.everyone.if.no.acl.found": "false",
    }


def format_arguments(state_dir: Path) -> list[str]:
    """``--add-scram`` arguments creating every user when KRaft storage is formatted."""
    args: list[str] = []
    for user in (ADMIN_USER, *SERVICE_USERS):
        args += ["--add-scram", f"{SCRAM_MECHANISM}=[name={user},password={password(Path(state_dir), user)}]"]
    return args
