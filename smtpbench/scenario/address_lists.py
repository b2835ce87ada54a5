"""Sender and recipient lists from files: ``session.senders_file``, ``recipients_file``.

A list is one address per line, or CSV lines ``address,weight``; blank lines and
lines starting with ``#`` are skipped. Each message draws its sender, and each of
its recipients, from the list with odds weight / sum of weights (equal when no
line has one), from the run's seed. Addresses are checked when the scenario is
read, each error naming the file and the line.
"""

from __future__ import annotations

import bisect
import csv
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

MAX_ADDRESSES: Final = 1_000_000
_FORBIDDEN: Final = frozenset(' \t<>()[]\\,;:"')


class AddressListError(ValueError):
    """A list that cannot be used: ``file:line: what is wrong``."""


@dataclass(frozen=True, slots=True)
class AddressList:
    """The addresses of one file and their cumulative weights (empty: all equal)."""

    path: str
    addresses: tuple[str, ...]
    cumulative: tuple[float, ...] = field(default=(), compare=False, repr=False)

    def pick(self, rng: random.Random) -> str:
        if not self.cumulative:
            return self.addresses[rng.randrange(len(self.addresses))]
        total = self.cumulative[-1]
        index = bisect.bisect_right(self.cumulative, rng.random() * total)
        return self.addresses[min(index, len(self.addresses) - 1)]

    def __repr__(self) -> str:
        return f"AddressList({self.path!r}, {len(self.addresses)} addresses)"


def read_address_list(path: str, *, utf8: bool = False) -> AddressList:
    """The list in ``path``; ``AddressListError`` naming the line that is wrong."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise AddressListError(f"{path}: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise AddressListError(f"{path}: not UTF-8 text ({err.reason})") from None
    addresses: list[str] = []
    weights: list[float] = []
    weighted = False
    for number, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
            continue
        where = f"{path}:{number}"
        if len(row) > 2:
            raise AddressListError(f"{where}: expected an address, or address,weight")
        address = row[0].strip()
        _check(address, where, utf8)
        weight = 1.0
        if len(row) == 2:
            weighted = True
            try:
                weight = float(row[1])
            except ValueError:
                raise AddressListError(f"{where}: the weight {row[1]!r} is not a number") from None
            if not weight > 0 or weight == float("inf"):
                raise AddressListError(f"{where}: a weight is above 0, got {row[1].strip()}")
        addresses.append(address)
        weights.append(weight)
        if len(addresses) > MAX_ADDRESSES:
            raise AddressListError(f"{path}: more than {MAX_ADDRESSES:,} addresses")
    if not addresses:
        raise AddressListError(f"{path}: no addresses in it")
    cumulative: list[float] = []
    if weighted:
        total = 0.0
        for weight in weights:
            total += weight
            cumulative.append(total)
    return AddressList(str(path), tuple(addresses), tuple(cumulative))


def _check(address: str, where: str, utf8: bool) -> None:
    local, _, domain = address.partition("@")
    if address.count("@") != 1 or not local or not domain:
        raise AddressListError(f"{where}: {address!r} is not an address such as user@example.com")
    bad = sorted(set(address) & _FORBIDDEN)
    if bad:
        raise AddressListError(f"{where}: {address!r} has {''.join(bad)!r} in it")
    if not address.isprintable() or (not utf8 and not address.isascii()):
        hint = "" if utf8 else " (or set session.smtputf8)"
        raise AddressListError(f"{where}: {address!r} is not printable ASCII{hint}")
    if len(address.encode("utf-8")) > 254:
        raise AddressListError(f"{where}: longer than 254 bytes")


__all__ = ["AddressList", "AddressListError", "read_address_list"]
