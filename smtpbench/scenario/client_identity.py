"""Who each session says its client is: ``[client]``.

Behind a proxy (HAProxy, or Postfix's postscreen with
``postscreen_upstream_proxy_protocol = haproxy``) a server learns the client's
address from a PROXY protocol header sent first on the connection. With
``proxy = "v1"`` or ``"v2"`` every session sends one, claiming the next address of
``addresses`` (a pool written as for ``target.source``: ranges, CIDR blocks,
lists), so one load machine looks like many clients to the server's per-client
limits, greylisting and logs.

A server that trusts this client (Postfix's ``smtpd_authorized_xclient_hosts``)
takes the same claim through XCLIENT instead: with ``xclient = true`` every session
sends ``XCLIENT ADDR=... NAME=... HELO=...`` after its greeting (and after
STARTTLS), and greets again once the server answers 220.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from smtpbench.scenario.templates import check_template, template_fields


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    proxy: int = 0  # PROXY protocol version sent first: 0 none, 1 or 2
    xclient: bool = False  # or Postfix's XCLIENT after the greeting
    addresses: tuple[str, ...] = ()  # the client addresses claimed, one per session in turn
    name: str | None = None  # XCLIENT NAME= template ({session}); None: [UNAVAILABLE]

    def __post_init__(self) -> None:
        if self.proxy not in (0, 1, 2):
            raise ValueError(f"proxy is v1 or v2, got {self.proxy!r}")
        if self.proxy and self.xclient:
            raise ValueError("a client identity goes through a PROXY header or XCLIENT: one")
        claims = self.proxy or self.xclient
        if claims and not self.addresses:
            raise ValueError("a client identity claims a client address: give addresses")
        if self.addresses and not claims:
            raise ValueError(
                'addresses are claimed through a PROXY header or XCLIENT: set proxy = "v1" '
                'or "v2", or xclient = true'
            )
        if self.name is not None:
            if not self.xclient:
                raise ValueError("name is sent with XCLIENT: set xclient = true")
            if template_fields(self.name) - {"session"}:
                raise ValueError(f"name takes {{session}} only, got {self.name!r}")
            check_template(self.name, kind="hostname")

    @property
    def is_empty(self) -> bool:
        return not (self.proxy or self.xclient)

    def name_of(self, session: int) -> str:
        """The XCLIENT NAME of session ``session``."""
        return "[UNAVAILABLE]" if self.name is None else self.name.format(session=session)


NO_CLIENT_IDENTITY: Final = ClientIdentity()

__all__ = ["NO_CLIENT_IDENTITY", "ClientIdentity"]
