"""Local source addresses for outgoing connections: ``target.source`` and ``--source``.

A pool is written as one address, a range (``127.0.0.2-127.0.0.50``), a CIDR block
(``127.0.0.0/28``, every address in it but the network and broadcast addresses of an
IPv4 block longer than two), or a comma-separated list of any of these. Session N
connects from address N modulo the pool's size, so the sessions of a run (across
workers too: session numbers are run-wide) spread evenly over it.
"""

from __future__ import annotations

import argparse
import ipaddress

MAX_SOURCES = 65536  # more local addresses than this is a typo, not a test

Ip = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_sources(text: str) -> tuple[str, ...]:
    """The addresses ``text`` names, in order; ``ValueError`` naming the part that is wrong."""
    addresses: list[str] = []
    for part in (piece.strip() for piece in text.split(",")):
        if not part:
            raise ValueError(f"expected addresses separated by commas, got {text!r}")
        for address in _expand(part):
            addresses.append(str(address))
            if len(addresses) > MAX_SOURCES:
                raise ValueError(f"{text!r} names more than {MAX_SOURCES} addresses")
    families = {":" in address for address in addresses}
    if len(families) > 1:
        raise ValueError(f"{text!r} mixes IPv4 and IPv6 addresses; a pool is one family")
    if len(set(addresses)) != len(addresses):
        raise ValueError(f"{text!r} names an address more than once")
    return tuple(addresses)


def _expand(part: str) -> list[Ip]:
    if "/" in part:
        try:
            network = ipaddress.ip_network(part, strict=False)
        except ValueError:
            raise ValueError(f"{part!r} is not a CIDR block such as 127.0.0.0/28") from None
        if network.num_addresses > MAX_SOURCES:
            raise ValueError(f"{part!r} holds more than {MAX_SOURCES} addresses")
        hosts = list(network.hosts())
        return hosts or [network.network_address]
    if "-" in part:
        first_text, _, last_text = part.partition("-")
        first, last = _address(first_text.strip(), part), _address(last_text.strip(), part)
        if first.version != last.version:
            raise ValueError(f"{part!r} runs from one address family to another")
        if int(last) < int(first):
            raise ValueError(f"{part!r} runs backwards: write the lower address first")
        if int(last) - int(first) >= MAX_SOURCES:
            raise ValueError(f"{part!r} holds more than {MAX_SOURCES} addresses")
        kind = type(first)
        return [kind(n) for n in range(int(first), int(last) + 1)]
    return [_address(part, part)]


def _address(text: str, part: str) -> Ip:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(
            f"{part!r}: {text!r} is not an IP address (a pool is addresses, ranges "
            "such as 127.0.0.2-127.0.0.50, or CIDR blocks)"
        ) from None


def add_source_argument(parser: argparse.ArgumentParser) -> None:
    """``--source``, for the commands that connect (``run``, ``replay``)."""
    parser.add_argument(
        "--source",
        metavar="ADDRESSES",
        help="local addresses to connect from, one per session in turn: 127.0.0.2-127.0.0.50, "
        "a CIDR block, or a comma-separated list (instead of target.source)",
    )


def source_option(text: str | None) -> tuple[str, ...] | None:
    """``--source`` parsed; ``ValueError`` saying the flag and what is wrong."""
    if text is None:
        return None
    try:
        return parse_sources(text)
    except ValueError as err:
        raise ValueError(f"--source: {err}") from None


__all__ = ["MAX_SOURCES", "add_source_argument", "parse_sources", "source_option"]
