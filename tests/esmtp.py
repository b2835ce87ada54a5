"""Helpers for the ESMTP tests: trustme certificates on disk, scenarios with ESMTP options."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme

from smtpbench.protocol.steps import Step
from smtpbench.scenario import IntRange, Scenario
from smtpbench.scenario.model import Auth, Tls
from tests.runs import scenario_for


@dataclass(frozen=True)
class Certs:
    """A test CA, a server certificate for localhost and 127.0.0.1, and a client one."""

    ca: trustme.CA
    ca_file: str
    server_cert: str
    server_key: str
    client_cert: str  # certificate and key in one PEM file


def make_certs(folder: Path) -> Certs:
    ca = trustme.CA()
    folder.mkdir(parents=True, exist_ok=True)
    ca_file = folder / "ca.pem"
    ca.cert_pem.write_to_path(ca_file)
    server = ca.issue_cert("localhost", "127.0.0.1", "sink.smtpbench.test")
    cert = folder / "server.pem"
    key = folder / "server.key"
    server.cert_chain_pems[0].write_to_path(cert)
    for extra in server.cert_chain_pems[1:]:
        extra.write_to_path(cert, append=True)
    server.private_key_pem.write_to_path(key)
    client = ca.issue_cert("client@smtpbench.test")
    client_file = folder / "client.pem"
    client.private_key_and_cert_chain_pem.write_to_path(client_file)
    return Certs(ca, str(ca_file), str(cert), str(key), str(client_file))


def esmtp_scenario(
    port: int,
    *,
    tls: Tls | None = None,
    auth: Auth | None = None,
    recipients: int = 1,
    messages: int = 1,
    **session: Any,
) -> Scenario:
    """A short load against 127.0.0.1:port (set rate/duration/sessions with ``load=``)."""
    load = session.pop("load", {"rate": 20, "duration": 1})
    scenario = scenario_for(port, **load)
    changes: dict[str, Any] = {
        "recipients": IntRange(recipients, recipients),
        "messages": IntRange(messages, messages),
        **session,
    }
    scenario = dataclasses.replace(
        scenario, session=dataclasses.replace(scenario.session, **changes)
    )
    if tls is not None:
        scenario = dataclasses.replace(scenario, tls=tls)
    if auth is not None:
        scenario = dataclasses.replace(scenario, auth=auth)
    return scenario


def with_timeouts(scenario: Scenario, **seconds: float) -> Scenario:
    timeouts = list(scenario.timeouts)
    for name, value in seconds.items():
        timeouts[Step.from_label(name)] = value
    return dataclasses.replace(scenario, timeouts=tuple(timeouts))
