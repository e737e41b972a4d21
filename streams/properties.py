"""Kafka client ``.properties`` files, and the Java client's property names in librdkafka's terms.

Why: operators already hold a ``client.properties`` for Kafka's own tools (``kafka-acls.sh
--command-config``...), written in Java's names (``sasl.jaas.config``, ``ssl.truststore.*``).
durable-kafka talks to Kafka through librdkafka, whose names differ where the Java client uses
JAAS or keystores. Reading the same file, translating what has a librdkafka equivalent and
refusing, by name and with the fix, what librdkafka cannot use, spares users a second,
hand-translated copy of their secrets.

:func:`parse_properties` follows ``java.util.Properties.load``: ``#``/``!`` comments, ``=``,
``:`` or whitespace between key and value, backslash line continuations, ``\\t \\n \\r \\f``,
``\\uXXXX`` and ``\\<any>`` escapes. :func:`translate_java_names` maps one source's settings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from durable_kafka.errors import ConfigurationError

__all__ = ["load_properties", "parse_properties", "translate_java_names"]

_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def _logical_lines(text: str) -> list[str]:
    """Join continuation lines (an odd number of trailing backslashes) the way Java does."""
    lines: list[str] = []
    pending: str | None = None
    for raw in text.splitlines():
        line = raw.lstrip(" \t\f")
        if pending is None and (not line or line[0] in "#!"):
            continue
        trailing = len(line) - len(line.rstrip("\\"))
        continued = trailing % 2 == 1
        if continued:
            line = line[:-1]
        pending = line if pending is None else pending + line
        if not continued:
            lines.append(pending)
            pending = None
    if pending is not None:
        lines.append(pending)
    return lines


def _unescape(text: str, where: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "\\" or i + 1 == len(text):
            out.append(char)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "u":
            digits = text[i + 2 : i + 6]
            if not re.fullmatch(r"[0-9a-fA-F]{4}", digits):
                raise ConfigurationError(f"{where}: malformed \\uXXXX escape {text[i:i + 6]!r}")
            out.append(chr(int(digits, 16)))
            i += 6
            continue
        out.append(_ESCAPES.get(nxt, nxt))
        i += 2
    return "".join(out)


def _split(line: str) -> tuple[str, str]:
    """Key and raw value of one logical line: the key ends at an unescaped '=', ':' or blank."""
    i = 0
    while i < len(line):
        char = line[i]
        if char == "\\":
            i += 2
            continue
        if char in "=: \t\f":
            break
        i += 1
    key, rest = line[:i], line[i:]
    rest = rest.lstrip(" \t\f")
    if rest[:1] in ("=", ":"):
        rest = rest[1:].lstrip(" \t\f")
    return key, rest


def parse_properties(text: str, source: str = "properties") -> dict[str, str]:
    """The settings of a Java ``.properties`` text (later keys win, as in Java)."""
    settings: dict[str, str] = {}
    for line in _logical_lines(text):
        raw_key, raw_value = _split(line)
        key = _unescape(raw_key, source)
        if key:
            settings[key] = _unescape(raw_value, f"{source}: {key}")
    return settings


def load_properties(path: str | Path) -> dict[str, str]:
    """Read and parse a properties file (UTF-8, like Java 9+ tools); ConfigurationError if unreadable."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read Kafka properties file {str(path)!r}: {exc.strerror}") from exc
    return parse_properties(text, str(path))


# --------------------------------------------------------------------------- Java names

# Java-only settings librdkafka has nothing for: key -> what to do instead.
_JAVA_ONLY = {
    "ssl.protocol": "librdkafka negotiates the TLS version through OpenSSL; remove it",
    "ssl.enabled.protocols": "librdkafka negotiates the TLS version through OpenSSL; remove it",
    "ssl.keymanager.algorithm": "a JVM setting; remove it",
    "ssl.trustmanager.algorithm": "a JVM setting; remove it",
    "ssl.secure.random.implementation": "a JVM setting; remove it",
    "ssl.engine.factory.class": "a JVM class; use librdkafka's ssl.* settings (or ssl.engine.location)",
    "ssl.provider": "a JVM setting; remove it",
    "sasl.login.class": "a JVM class; set sasl.mechanism and sasl.username/sasl.password",
    "sasl.client.callback.handler.class": "a JVM class; set sasl.username/sasl.password",
    "sasl.oauthbearer.jwks.endpoint.url": "a broker-side setting; remove it from client settings",
}

_JAAS = re.compile(r"^\s*([\w.$]+)\s+(required|requisite|sufficient|optional)\s*(.*?);?\s*$", re.S)
_JAAS_OPTION = re.compile(r'([\w.]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s;]+))')


def _jaas_options(key: str, text: str) -> tuple[str, dict[str, str]]:
    match = _JAAS.match(text)
    if match is None:
        raise ConfigurationError(f"{key}: cannot read the JAAS entry {text[:60]!r}... "
                                 "(expected '<LoginModule> required name=\"value\" ...;')")
    options = {m.group(1): m.group(2) if m.group(2) is not None else m.group(3)
               for m in _JAAS_OPTION.finditer(match.group(3))}
    options = {k: re.sub(r"\\(.)", r"\1", v) for k, v in options.items()}
    return match.group(1), options


def _translate_jaas(value: str) -> dict[str, str]:
    """``sasl.jaas.config`` of the Plain, Scram or OAuthBearer login modules, in librdkafka names."""
    module, options = _jaas_options("sasl.jaas.config", value)
    short = module.rsplit(".", 1)[-1]
    if short in ("PlainLoginModule", "ScramLoginModule"):
        missing = [name for name in ("username", "password") if name not in options]
        if missing:
            raise ConfigurationError(f"sasl.jaas.config: {short} without {' and '.join(missing)}")
        return {"sasl.username": options["username"], "sasl.password": options["password"]}
    if short == "OAuthBearerLoginModule":
        if "clientId" in options:
            out = {"sasl.oauthbearer.method": "oidc", "sasl.oauthbearer.client.id": options["clientId"]}
            if "clientSecret" in options:
                out["sasl.oauthbearer.client.secret"] = options["clientSecret"]
            if "scope" in options:
                out["sasl.oauthbearer.scope"] = options["scope"]
            return out
        unsecured = {k: v for k, v in options.items() if k.startswith("unsecuredLogin")}
        if unsecured:
            claims = {"unsecuredLoginStringClaim_sub": "principal", "unsecuredLoginLifetimeSeconds": "lifeSeconds",
                      "unsecuredLoginPrincipalClaimName": "principalClaimName"}
            parts = [f"{claims[k]}={v}" for k, v in unsecured.items() if k in claims]
            return {"enable.sasl.oauthbearer.unsecure.jwt": "true", "sasl.oauthbearer.config": " ".join(parts)}
        raise ConfigurationError("sasl.jaas.config: OAuthBearerLoginModule without clientId (OIDC) or "
                                 "unsecuredLogin* options; set sasl.oauthbearer.* settings instead")
    raise ConfigurationError(f"sasl.jaas.config: login module {module!r} has no librdkafka equivalent; "
                             "for Kerberos use sasl.kerberos.service.name/principal/keytab, otherwise "
                             "PLAIN, SCRAM-SHA-256/512 or OAUTHBEARER with sasl.username/sasl.password")


def _store_type(settings: Mapping[str, str], kind: str) -> str:
    explicit = settings.get(f"ssl.{kind}.type")
    if explicit:
        return explicit.strip().upper()
    location = settings.get(f"ssl.{kind}.location", "")
    if location.lower().endswith((".p12", ".pfx")):
        return "PKCS12"
    if location.lower().endswith((".pem", ".crt")):
        return "PEM"
    return "JKS"  # the Java client's default


def _translate_truststore(settings: Mapping[str, str]) -> dict[str, str]:
    if "ssl.truststore.location" not in settings and "ssl.truststore.certificates" not in settings:
        return {}
    kind = _store_type(settings, "truststore")
    if kind != "PEM":
        raise ConfigurationError(
            f"ssl.truststore.location: a {kind} truststore cannot be read by librdkafka; export the CA "
            "certificate(s) as PEM (keytool -exportcert -rfc -keystore <truststore> -alias <ca> "
            "-file ca.pem) and set ssl.ca.location=ca.pem (or ssl.truststore.type=PEM for a PEM file)")
    out = {}
    if "ssl.truststore.location" in settings:
        out["ssl.ca.location"] = settings["ssl.truststore.location"]
    if "ssl.truststore.certificates" in settings:
        out["ssl.ca.pem"] = settings["ssl.truststore.certificates"]
    return out


def _translate_keystore(settings: Mapping[str, str]) -> dict[str, str]:
    names = ("ssl.keystore.location", "ssl.keystore.key", "ssl.keystore.certificate.chain")
    if not any(name in settings for name in names):
        return {}
    kind = _store_type(settings, "keystore")
    if kind == "PKCS12":  # librdkafka reads PKCS#12 keystores under the same names
        out = {"ssl.keystore.location": settings["ssl.keystore.location"]}
        if "ssl.keystore.password" in settings:
            out["ssl.keystore.password"] = settings["ssl.keystore.password"]
        return out
    if kind != "PEM":
        raise ConfigurationError(
            f"ssl.keystore.location: a {kind} keystore cannot be read by librdkafka; convert it to PKCS12 "
            "(keytool -importkeystore -deststoretype PKCS12 ...) and set ssl.keystore.type=PKCS12, or "
            "use PEM files with ssl.certificate.location and ssl.key.location")
    out = {}
    if "ssl.keystore.location" in settings:  # one PEM file holding the key and the chain
        out["ssl.certificate.location"] = settings["ssl.keystore.location"]
        out["ssl.key.location"] = settings["ssl.keystore.location"]
    if "ssl.keystore.key" in settings:
        out["ssl.key.pem"] = settings["ssl.keystore.key"]
    if "ssl.keystore.certificate.chain" in settings:
        out["ssl.certificate.pem"] = settings["ssl.keystore.certificate.chain"]
    return out


_STORE_KEYS = frozenset({
    "ssl.truststore.location", "ssl.truststore.type", "ssl.truststore.password", "ssl.truststore.certificates",
    "ssl.keystore.location", "ssl.keystore.type", "ssl.keystore.password", "ssl.keystore.key",
    "ssl.keystore.certificate.chain",
})


def translate_java_names(settings: Mapping[str, str], source: str) -> dict[str, str]:
    """``settings`` with Java client names replaced by librdkafka's; ConfigurationError for the rest.

    ``source`` names where the settings came from, for the error message.
    """
    out: dict[str, str] = {}
    try:
        for key, value in settings.items():
            if key in _JAVA_ONLY:
                raise ConfigurationError(f"{key} is a Java client setting librdkafka does not have: {_JAVA_ONLY[key]}")
            if key in _STORE_KEYS:
                continue  # handled together below
            if key == "sasl.jaas.config":
                out.update(_translate_jaas(str(value)))
            elif key == "sasl.login.callback.handler.class":
                if not str(value).endswith("OAuthBearerLoginCallbackHandler"):
                    raise ConfigurationError(f"{key}={value} is a JVM class librdkafka cannot load; "
                                             "for OIDC set sasl.oauthbearer.method=oidc")
                out["sasl.oauthbearer.method"] = "oidc"
            elif key == "ssl.endpoint.identification.algorithm" and str(value).strip() == "":
                out[key] = "none"  # Java's empty value disables the check; librdkafka says 'none'
            else:
                out[key] = value
        out.update(_translate_truststore(settings))
        out.update(_translate_keystore(settings))
    except ConfigurationError as exc:
        raise ConfigurationError(f"{source}: {exc}") from None
    return out
