"""The Kafka settings resolver: properties parsing, env mapping, Java names, precedence, rejections."""

from __future__ import annotations

from pathlib import Path

import pytest

from durable_kafka.errors import ConfigurationError
from durable_kafka.streams.config import (
    admin_config,
    bootstrap_servers,
    consumer_config,
    env_name,
    producer_config,
    resolve_kafka_config,
)
from durable_kafka.streams.properties import parse_properties, translate_java_names

SCRAM_JAAS = ('org.apache.kafka.common.security.scram.ScramLoginModule required '
              'username="svc-a" password="s3cr=t;\\"x";')


# --------------------------------------------------------------------------- properties format

def test_properties_separators_comments_and_blank_lines() -> None:
    text = "# comment\n! also a comment\n\n a=1\nb : 2\nc 3\nd=\ne\n  f =  spaced value  \n"
    assert parse_properties(text) == {"a": "1", "b": "2", "c": "3", "d": "", "e": "", "f": "spaced value  "}


def test_properties_continuation_and_escapes() -> None:
    text = ("sasl.jaas.config=org.Module required \\\n    username=\"u\" \\\n    password=\"p\";\n"
            "path=C:\\\\kafka\\\\ca.pem\nkey\\=with\\:seps=v\nuni=\\u00e9t\\u00E9\ntab=a\\tb\n"
            "ends.with.backslash=x\\\\\nnext=1\n")
    parsed = parse_properties(text)
    assert parsed["sasl.jaas.config"] == 'org.Module required username="u" password="p";'
    assert parsed["path"] == "C:\\kafka\\ca.pem"
    assert parsed["key=with:seps"] == "v"
    assert parsed["uni"] == "été"
    assert parsed["tab"] == "a\tb"
    assert parsed["ends.with.backslash"] == "x\\"  # an even count of backslashes does not continue
    assert parsed["next"] == "1"


def test_properties_later_key_wins_and_comment_only_at_line_start() -> None:
    assert parse_properties("a=1\na=2\nb=x # not a comment\n") == {"a": "2", "b": "x # not a comment"}


def test_properties_bad_unicode_escape_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="uXXXX"):
        parse_properties("a=\\u12G4\n")


# --------------------------------------------------------------------------- Java names

def test_scram_and_plain_jaas_become_username_and_password() -> None:
    out = translate_java_names({"sasl.jaas.config": SCRAM_JAAS, "sasl.mechanism": "SCRAM-SHA-512"}, "t")
    assert out == {"sasl.username": "svc-a", "sasl.password": 's3cr=t;"x', "sasl.mechanism": "SCRAM-SHA-512"}
    plain = 'org.apache.kafka.common.security.plain.PlainLoginModule required username=u password=p;'
    assert translate_java_names({"sasl.jaas.config": plain}, "t") == {"sasl.username": "u", "sasl.password": "p"}


def test_oauthbearer_jaas_with_client_credentials_becomes_oidc() -> None:
    jaas = ('org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required '
            'clientId="app" clientSecret="cs" scope="kafka";')
    out = translate_java_names({"sasl.jaas.config": jaas,
                                "sasl.oauthbearer.token.endpoint.url": "https://idp/token"}, "t")
    assert out == {"sasl.oauthbearer.method": "oidc", "sasl.oauthbearer.client.id": "app",
                   "sasl.oauthbearer.client.secret": "cs", "sasl.oauthbearer.scope": "kafka",
                   "sasl.oauthbearer.token.endpoint.url": "https://idp/token"}


def test_kerberos_jaas_is_rejected_with_the_librdkafka_alternative() -> None:
    jaas = 'com.sun.security.auth.module.Krb5LoginModule required useKeyTab=true keyTab="/k";'
    with pytest.raises(ConfigurationError, match="sasl.kerberos"):
        translate_java_names({"sasl.jaas.config": jaas}, "t")


def test_pem_truststore_becomes_ca_location_and_its_password_is_dropped() -> None:
    out = translate_java_names({"ssl.truststore.type": "PEM", "ssl.truststore.location": "/etc/ca.pem",
                                "ssl.truststore.password": "ignored"}, "t")
    assert out == {"ssl.ca.location": "/etc/ca.pem"}


@pytest.mark.parametrize("settings", [
    {"ssl.truststore.location": "/etc/truststore.jks", "ssl.truststore.password": "x"},
    {"ssl.truststore.type": "PKCS12", "ssl.truststore.location": "/etc/trust.p12"},
])
def test_jks_and_pkcs12_truststores_are_rejected_naming_ssl_ca_location(settings: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError, match=r"ssl\.truststore\.location.*ssl\.ca\.location"):
        translate_java_names(settings, "client.properties")


def test_pem_keystore_file_gives_certificate_and_key_locations() -> None:
    out = translate_java_names({"ssl.keystore.type": "PEM", "ssl.keystore.location": "/k/client.pem",
                                "ssl.key.password": "kp"}, "t")
    assert out == {"ssl.certificate.location": "/k/client.pem", "ssl.key.location": "/k/client.pem",
                   "ssl.key.password": "kp"}


def test_pkcs12_keystore_passes_through_and_jks_keystore_is_rejected() -> None:
    out = translate_java_names({"ssl.keystore.location": "/k/client.p12", "ssl.keystore.password": "pw"}, "t")
    assert out == {"ssl.keystore.location": "/k/client.p12", "ssl.keystore.password": "pw"}
    with pytest.raises(ConfigurationError, match="JKS keystore.*PKCS12"):
        translate_java_names({"ssl.keystore.location": "/k/client.jks"}, "t")


@pytest.mark.parametrize("key", ["ssl.enabled.protocols", "ssl.trustmanager.algorithm", "sasl.login.class"])
def test_java_only_keys_are_rejected_by_name(key: str) -> None:
    with pytest.raises(ConfigurationError, match=key.replace(".", r"\.")):
        translate_java_names({key: "x"}, "t")


def test_empty_endpoint_identification_means_none() -> None:
    assert translate_java_names({"ssl.endpoint.identification.algorithm": ""}, "t") == {
        "ssl.endpoint.identification.algorithm": "none"}


# --------------------------------------------------------------------------- env and precedence

def test_env_names_map_to_dotted_properties() -> None:
    environ = {"DURABLE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "DURABLE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
               "DURABLE_KAFKA_SASL_USERNAME": "svc-a", "DURABLE_KAFKA_SASL_PASSWORD": "pw",
               "DURABLE_KAFKA_SSL_CA_LOCATION": "/ca.pem", "DURABLE_KAFKA_SASL_OAUTHBEARER_CLIENT_ID": "app",
               "DURABLE_KAFKA_BOOTSTRAP": "b:1", "DURABLE_KAFKA_CLIENT_ID": "me",
               # not client properties: ignored
               "DURABLE_KAFKA_STATE_DIR": "/s", "DURABLE_KAFKA_CACHE_DIR": "/c", "DURABLE_KAFKA_OTHER": "x",
               "KAFKA_SASL_PASSWORD": "not ours"}
    assert resolve_kafka_config(environ=environ) == {
        "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "svc-a",
        "sasl.password": "pw", "ssl.ca.location": "/ca.pem", "sasl.oauthbearer.client.id": "app",
        "bootstrap.servers": "b:1", "client.id": "me"}
    assert env_name("sasl.password") == "DURABLE_KAFKA_SASL_PASSWORD"
    assert env_name("bootstrap.servers") == "DURABLE_KAFKA_BOOTSTRAP"


def test_precedence_explicit_over_env_over_file(tmp_path: Path) -> None:
    file = tmp_path / "client.properties"
    file.write_text("bootstrap.servers=file:9092\nsecurity.protocol=SSL\nsasl.username=from-file\n"
                    "ssl.ca.location=/file/ca.pem\n")
    environ = {"DURABLE_KAFKA_CONFIG_FILE": str(file), "DURABLE_KAFKA_SASL_USERNAME": "from-env",
               "DURABLE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}
    resolved = resolve_kafka_config({"sasl.username": "explicit"}, environ=environ)
    assert resolved == {"bootstrap.servers": "file:9092", "security.protocol": "SASL_SSL",
                        "sasl.username": "explicit", "ssl.ca.location": "/file/ca.pem"}
    # an explicit file replaces the environment's file
    other = tmp_path / "other.properties"
    other.write_text("client.id=other\n")
    assert resolve_kafka_config(config_file=other, environ={"DURABLE_KAFKA_CONFIG_FILE": str(file)}) == {
        "client.id": "other"}


def test_bootstrap_argument_beats_every_source() -> None:
    assert bootstrap_servers("arg:1", {"bootstrap.servers": "cfg:2"}) == "arg:1"
    assert bootstrap_servers(None, {"bootstrap.servers": "cfg:2"}) == "cfg:2"
    assert bootstrap_servers(None, {}) == "127.0.0.1:9092"


def test_java_properties_file_is_translated(tmp_path: Path) -> None:
    file = tmp_path / "client.properties"
    escaped = SCRAM_JAAS.replace("\\", "\\\\")  # a backslash in a properties file is written twice
    file.write_text(f"security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\nsasl.jaas.config={escaped}\n"
                    "ssl.truststore.type=PEM\nssl.truststore.location=/ca.pem\n")
    assert resolve_kafka_config(config_file=file, environ={}) == {
        "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "svc-a",
        "sasl.password": 's3cr=t;"x', "ssl.ca.location": "/ca.pem"}


@pytest.mark.parametrize("key", ["group.id", "transactional.id", "enable.idempotence", "key.serializer",
                                 "isolation.level", "partitioner"])
def test_engine_settings_cannot_be_overridden(key: str) -> None:
    with pytest.raises(ConfigurationError, match=key.replace(".", r"\.")):
        resolve_kafka_config({key: "x"}, environ={})


def test_rejection_names_the_source(tmp_path: Path) -> None:
    file = tmp_path / "bad.properties"
    file.write_text("ssl.truststore.location=/t.jks\n")
    with pytest.raises(ConfigurationError, match="bad.properties.*ssl.truststore.location"):
        resolve_kafka_config(config_file=file, environ={})
    with pytest.raises(ConfigurationError, match="cannot read"):
        resolve_kafka_config(config_file=tmp_path / "missing.properties", environ={})


def test_every_client_config_carries_the_security_settings() -> None:
    security = {"security.protocol": "SASL_SSL", "sasl.username": "u", "bootstrap.servers": "ignored:1"}
    for config in (producer_config("b:1", kafka_config=security), consumer_config("b:1", "g", kafka_config=security),
                   admin_config("b:1", kafka_config=security)):
        assert config["security.protocol"] == "SASL_SSL" and config["sasl.username"] == "u"
        assert config["bootstrap.servers"] == "b:1"  # the resolved bootstrap is passed separately


def test_client_configs_resolve_the_environment_when_given_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DURABLE_KAFKA_SECURITY_PROTOCOL", "SSL")
    assert consumer_config("b:1", "g")["security.protocol"] == "SSL"
    monkeypatch.delenv("DURABLE_KAFKA_SECURITY_PROTOCOL")
    assert "security.protocol" not in consumer_config("b:1", "g")
