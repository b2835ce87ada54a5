"""The scenario's ESMTP keys: [tls], [auth] and the [session] extension keys read, checked
with errors naming the key, and written back (without secrets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from smtpbench.engine.session import SessionSetupError, preflight
from smtpbench.scenario import ScenarioError, parse_scenario, scenario_to_toml
from tests.test_scenario_loader import toml_blocks

FULL = """
[session]
greeting = "EHLO"
pipelining = true
chunking = true
chunk_size = "32KiB"
body = "8bitmime"
smtputf8 = true
mail_from = "grüße{session}@bücher.test"
require = ["size", "PIPELINING"]
dsn = { notify = "SUCCESS,FAILURE,DELAY", ret = "hdrs", envid = "run.{session}", orcpt = true }

[tls]
mode = "starttls"
verify = false
sni = "mx.example.net"
ca_file = "ca.pem"
client_cert = "client.pem"
client_key = "client.key"

[auth]
mechanism = "cram-md5"
username = "loadtest"
password = "hunter2-but-longer"
"""


def test_every_key_reads_and_writes_back_without_the_password() -> None:
    scenario = parse_scenario(FULL)
    session, tls, auth = scenario.session, scenario.tls, scenario.auth
    assert session.pipelining and session.chunking and session.chunk_size == 32 * 1024
    assert session.body == "8bitmime" and session.smtputf8
    assert session.require == ("SIZE", "PIPELINING")
    assert session.dsn.notify == ("SUCCESS", "FAILURE", "DELAY") and session.dsn.ret == "HDRS"
    assert session.extensions_asked() == (
        "SIZE",
        "PIPELINING",
        "8BITMIME",
        "SMTPUTF8",
        "CHUNKING",
        "DSN",
    )
    assert (tls.mode, tls.verify, tls.sni) == ("starttls", False, "mx.example.net")
    assert auth.mechanism == "CRAM-MD5" and auth.password == "hunter2-but-longer"
    assert "hunter2" not in repr(auth)
    written = scenario_to_toml(scenario)
    assert "hunter2" not in written
    again = parse_scenario(written)
    assert again == scenario  # the password takes no part in comparisons
    assert again.auth.password is None and again.auth.password_env == "SMTPBENCH_PASSWORD"


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ('[session]\npipelining = "yes"', "session.pipelining", "true or false"),
        ('[session]\nbody = "binary"', "session.body", "'7bit' or '8bitmime'"),
        ('[session]\nchunk_size = "0"', "session.chunk_size", "chunk size"),
        ('[session]\nrequire = ["TURBO"]', "session.require", "unknown extension 'TURBO'"),
        ('[session]\ndsn = { notify = "SOMETIMES" }', "session.dsn.notify", "NEVER or some"),
        (
            '[session]\ndsn = { notify = "NEVER,SUCCESS" }',
            "session.dsn.notify",
            "cannot be combined",
        ),
        ('[session]\ndsn = { ret = "ALL" }', "session.dsn.ret", "'FULL' or 'HDRS'"),
        ("[session]\ndsn = {}", "session.dsn", "asks for nothing"),
        ('[session]\ndsn = { notfy = "NEVER" }', "session.dsn.notfy", "did you mean 'notify'"),
        ('[session]\nrcpt_to = "jürgen@x.test"', "session.rcpt_to", "session.smtputf8"),
        ('[session]\ngreeting = "HELO"\nchunking = true', "session.chunking", "use EHLO"),
        ('[tls]\nmode = "ssl"', "tls.mode", "'none' or 'starttls' or 'implicit'"),
        ('[tls]\nsni = "x"', "tls.sni", 'tls.mode is "none"'),
        ('[tls]\nmode = "starttls"\nclient_key = "k.pem"', "tls.client_key", "tls.client_cert"),
        ('[auth]\nmechanism = "NTLM"', "auth.mechanism", "'PLAIN' or 'LOGIN'"),
        ('[auth]\nusername = "u"', "auth.username", "auth.mechanism is not set"),
        ('[auth]\nmechanism = "PLAIN"\npassword_env = "1X"', "auth.password_env", "environment"),
        ('[auth]\nmechanism = "PLAIN"\npassword = 12345', "auth.password", "expected a string"),
        ('[session]\ngreeting = "HELO"\n[auth]\nmechanism = "PLAIN"', "auth.mechanism", "EHLO"),
        ('[tsl]\nmode = "starttls"', "tsl", "did you mean 'tls'"),
    ],
)
def test_mistakes_name_the_key(text: str, key: str, words: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, file="x.toml")
    assert caught.value.key == key, str(caught.value)
    assert words in str(caught.value)


def test_a_wrong_password_value_is_never_echoed() -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario('[auth]\nmechanism = "PLAIN"\npassword = "bad\\nsecret-value"')
    assert "secret-value" not in str(caught.value)


def test_preflight_finds_credentials_and_tls_files(tmp_path: Path) -> None:
    scenario = parse_scenario('[auth]\nmechanism = "LOGIN"\nusername_env = "WHO"')
    with pytest.raises(SessionSetupError, match="WHO"):
        preflight(scenario, environ={})
    with pytest.raises(SessionSetupError, match="SMTPBENCH_PASSWORD"):
        preflight(scenario, environ={"WHO": "me"})
    preflight(scenario, environ={"WHO": "me", "SMTPBENCH_PASSWORD": "pw"})
    missing = tmp_path / "missing.pem"
    tls = parse_scenario(f'[tls]\nmode = "starttls"\nca_file = "{missing}"')
    with pytest.raises(SessionSetupError, match=r"tls\.ca_file"):
        preflight(tls)


def test_the_format_reference_esmtp_examples_load() -> None:
    docs = Path(__file__).resolve().parents[1] / "docs" / "scenarios.md"
    blocks = toml_blocks(docs.read_text(encoding="utf-8"))
    esmtp = [block for block in blocks if block.startswith(("[tls]", "[auth]", "# ESMTP"))]
    assert len(esmtp) >= 2
    for block in esmtp:
        parse_scenario(block)
