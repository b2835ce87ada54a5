"""Who each session says its client is: ``[client]``.

Behind a proxy (HAProxy, or Postfix's postscreen with
``postscreen_upstream_proxy_protocol = haproxy``) a server learns the client's
address from a PROXY protocol header sent first on the connection. With
``proxy = "v1"`` or ``"v2"`` every session sends one, claiming the next address of
``addresses`` (a pool written as for ``target.source``: ranges, CIDR blocks,
lists), so one load machine looks like many clients to the server's per-client
limits, greylisting and logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    proxy: int = 0  # PROXY protocol version sent first: 0 none, 1 or 2
    addresses: tuple[str, ...] = ()  # the client addresses claimed, one per session in turn

    def __post_init__(self) -> None:
        if self.proxy not in (0, 1, 2):
            raise ValueError(f"proxy is v1 or v2, got {self.proxy!r}")
        if self.proxy and not self.addresses:
            raise ValueError("a PROXY header claims a client address: give addresses")
        if self.addresses and not self.proxy:
            raise ValueError(
                'addresses are claimed through a PROXY header: set proxy = "v1" or "v2"'
            )

    @property
    def is_empty(self) -> bool:
        return not self.proxy


NO_CLIENT_IDENTITY: Final = ClientIdentity()

__all__ = ["NO_CLIENT_IDENTITY", "ClientIdentity"]
