"""A private Postfix for the tests: its own configuration, queue and log under a temporary
folder, smtpd on loopback ports, every message delivered to the discard transport.

    with private_postfix(certs, users={"loadtest": "secret"}) as postfix:
        ... send to 127.0.0.1:postfix.port (STARTTLS, AUTH after TLS)
        ... or 127.0.0.1:postfix.smtps_port (implicit TLS)
        postfix.wait_for_disconnects(n)   # the log has caught up
        postfix.log_lines(since)          # what Postfix logged

What it is set up to do, so that tests can tell every kind of reply apart:
- ``relay_domains`` (smtpbench.test, rcpt0.test, rcpt1.test, rcpt2.test) are
  taken and discarded; any other domain is refused with 554 Relay access denied
  (``mynetworks`` covers no loopback address, so smtpbench is an outsider);
- ``check_recipient_access``: every address at rcpt1.test gets 550 5.1.1, at
  rcpt2.test 554 5.7.1 (Postfix's REJECT);
- STARTTLS with a trustme certificate, AUTH (Cyrus SASL, sasldb: PLAIN, LOGIN,
  CRAM-MD5) only once TLS is on; implicit TLS on a second port;
- PIPELINING, SIZE, 8BITMIME, SMTPUTF8, CHUNKING, DSN as Postfix offers them;
  VRFY disabled; ``maillog_file`` written by postlogd.

With ``relay_to=PORT`` (``run --through`` tests), mail for ``transit.test`` is
relayed by Postfix's ``smtp`` client to ``[127.0.0.1]:PORT`` instead of
discarded; ``defer=True`` holds it in the queue (``defer_transports``),
``body_checks`` rules (regexp lines) change it on the way, and ``rate_delay``
(seconds) spaces deliveries (``smtp_destination_rate_delay``), a queue delay
of a known size.

Run as root (it starts a master daemon) with the Debian package ``postfix``
and ``sasl2-bin`` (saslpasswd2) installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.esmtp import Certs
from tests.servers import LOOPBACK, free_port, postfix_binary, wait_for_port

HOSTNAME = "postfix.smtpbench.test"
# rcpt0.test takes mail; rcpt1.test answers 550, rcpt2.test 554, so that the template
# user{counter}@rcpt{rcpt}.test gives each recipient of a message its own fate.
RELAY_DOMAINS = ("smtpbench.test", "rcpt0.test", "rcpt1.test", "rcpt2.test")
TRANSIT_DOMAIN = "transit.test"  # relayed to the receiving sink with relay_to=PORT
SASL_MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5")
_DISCONNECT = re.compile(r"smtpd\[\d+\]: disconnect from \S+ (.*)$")
_COMMAND_COUNT = re.compile(r"^([a-z]+)=(\d+)(?:/(\d+))?$")

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
meta_directory = /etc/postfix
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
mail_owner = postfix
setgid_group = postdrop
myhostname = {hostname}
mydomain = smtpbench.test
myorigin = $myhostname
mydestination = $myhostname
inet_interfaces = {loopback}
inet_protocols = ipv4
mynetworks = 192.0.2.0/24
relay_domains = {relay_domains}
local_recipient_maps =
alias_maps =
alias_database =
local_transport = discard:
relay_transport = discard:
default_transport = discard:
smtpd_banner = $myhostname ESMTP
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
smtpd_recipient_restrictions = check_recipient_access texthash:{root}/config/recipient_access
smtpd_client_event_limit_exceptions = {loopback}
smtpd_error_sleep_time = 0
smtpd_soft_error_limit = 1000
smtpd_hard_error_limit = 1000
smtpd_peername_lookup = no
smtputf8_enable = yes
disable_vrfy_command = yes
message_size_limit = 10240000
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_security_level = may
smtpd_tls_auth_only = yes
smtpd_tls_loglevel = 0
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
cyrus_sasl_config_path = {root}/config/sasl
smtpd_sasl_security_options = noanonymous
smtpd_sasl_tls_security_options = noanonymous
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
"""

MASTER_CF = """\
{port}     inet  n       -       n       -       -       smtpd
{smtps_port}     inet  n       -       n       -       -       smtpd
  -o smtpd_tls_wrappermode=yes
  -o smtpd_tls_security_level=encrypt
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
discard   unix  -       -       n       -       -       discard
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
postlog   unix-dgram n  -       n       -       1       postlogd
"""

# With relay_to: the smtp client, the transport map, and no TLS towards the receiving sink.
TRANSIT_CF = """\
transport_maps = texthash:{root}/config/transport
smtp_tls_security_level = none
smtp_host_lookup = native
"""
TRANSIT_MASTER_CF = """\
smtp      unix  -       -       n       -       -       smtp
"""

RECIPIENT_ACCESS = """\
rcpt1.test 550 5.1.1 Mailbox unavailable
rcpt2.test REJECT
"""


def skip_without_sasl() -> None:
    """Skips the calling test on a machine without saslpasswd2, but not in CI, whose
    script installs it: there it fails instead of hiding."""
    import pytest

    if _saslpasswd2() is None and not os.environ.get("CI"):
        pytest.skip("saslpasswd2 is not installed (Debian package sasl2-bin)")


def _saslpasswd2() -> str | None:
    found = shutil.which("saslpasswd2")
    if found is None and Path("/usr/sbin/saslpasswd2").exists():
        found = "/usr/sbin/saslpasswd2"
    return found


class PostfixError(RuntimeError):
    """The private Postfix did not start; carries what it said."""


@dataclass
class CommandCounts:
    """The ``disconnect from`` lines summed: command -> (succeeded, sent)."""

    counts: dict[str, tuple[int, int]]
    sessions: int

    def get(self, command: str) -> tuple[int, int]:
        return self.counts.get(command, (0, 0))


@dataclass
class Postfix:
    root: Path
    port: int  # plain, STARTTLS offered, AUTH after TLS
    smtps_port: int  # implicit TLS
    log: Path

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def log_lines(self, since: int = 0) -> list[str]:
        if not self.log.exists():
            return []
        with self.log.open("rb") as file:
            file.seek(since)
            return file.read().decode("utf-8", "replace").splitlines()

    def disconnects(self, since: int = 0) -> CommandCounts:
        """What Postfix counted per command at each disconnect (Postfix >= 3.0): ``rcpt=2/3``
        is 2 accepted of 3; a bare ``ehlo=2`` means all of them were. Connections that
        sent no command (port probes) are left out."""
        counts: dict[str, list[int]] = {}
        sessions = 0
        for line in self.log_lines(since):
            match = _DISCONNECT.search(line)
            if match is None or match.group(1).endswith("commands=0/0"):
                continue  # not a session: a port probe that sent nothing
            sessions += 1
            for item in match.group(1).split():
                part = _COMMAND_COUNT.match(item)
                if part is None:
                    continue
                name, ok, total = part.group(1), int(part.group(2)), part.group(3)
                entry = counts.setdefault(name, [0, 0])
                entry[0] += ok
                entry[1] += int(total) if total is not None else ok
        return CommandCounts({k: (v[0], v[1]) for k, v in counts.items()}, sessions)

    def wait_for_disconnects(self, sessions: int, since: int = 0, timeout: float = 30) -> None:
        """Until the log holds ``sessions`` disconnect lines after ``since`` (postlogd writes
        a little after the fact)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.disconnects(since).sessions >= sessions:
                return
            time.sleep(0.05)
        seen = self.disconnects(since).sessions
        raise TimeoutError(f"Postfix logged {seen} of {sessions} disconnects in {timeout}s")

    def wait_for_log(self, pattern: str, count: int, since: int = 0, timeout: float = 30) -> int:
        """Until ``count`` lines after ``since`` match ``pattern``; how many there are."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        found = 0
        while time.monotonic() < deadline:
            found = sum(1 for line in self.log_lines(since) if regex.search(line))
            if found >= count:
                return found
            time.sleep(0.05)
        return found


def _run(command: list[str], **options: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, **options)  # type: ignore[call-overload]


def _sasl_users(root: Path, users: Mapping[str, str]) -> None:
    # Debian's smtpd reads $config_directory/sasl/smtpd.conf (cyrus_sasl_config_path says
    # the same for other builds).
    sasl = root / "config" / "sasl"
    sasl.mkdir()
    database = root / "sasldb2"  # outside the configuration, which root must own
    saslpasswd2 = _saslpasswd2()
    if saslpasswd2 is None:
        raise PostfixError("saslpasswd2 is not installed (Debian package sasl2-bin)")
    for user, password in users.items():
        done = _run(
            [saslpasswd2, "-f", str(database), "-c", "-p", "-u", HOSTNAME, user], input=password
        )
        if done.returncode != 0:
            raise PostfixError(f"saslpasswd2 failed: {done.stderr.strip()}")
    (sasl / "smtpd.conf").write_text(
        "pwcheck_method: auxprop\n"
        "auxprop_plugin: sasldb\n"
        f"sasldb_path: {database}\n"
        f"mech_list: {' '.join(SASL_MECHANISMS)}\n"
    )
    # smtpd reads the database after dropping to the postfix user.
    shutil.chown(database, user="postfix")
    os.chmod(database, 0o600)


@contextmanager
def private_postfix(
    certs: Certs,
    users: Mapping[str, str],
    *,
    relay_to: int | None = None,
    defer: bool = False,
    body_checks: str | None = None,
    rate_delay: int | None = None,
    settings: Mapping[str, str] | None = None,
) -> Iterator[Postfix]:
    """Starts a Postfix of its own and stops it, removing every file it made; with
    ``relay_to``, mail for ``TRANSIT_DOMAIN`` goes on to ``[127.0.0.1]:relay_to``;
    ``settings`` are more main.cf parameters (name -> value)."""
    postfix = postfix_binary("postfix")
    if postfix is None:
        raise PostfixError("postfix is not installed (Debian package postfix)")
    # Postfix's daemons run as the postfix user: the folders must be reachable by it.
    root = Path(tempfile.mkdtemp(prefix="smtpbench-postfix-"))
    os.chmod(root, 0o755)
    config = root / "config"
    config.mkdir()
    for name in ("queue", "data"):
        (root / name).mkdir()
    shutil.chown(root / "data", user="postfix")
    port, smtps_port = free_port(), free_port()
    values = {
        "root": root,
        "hostname": HOSTNAME,
        "loopback": LOOPBACK,
        "relay_domains": ", ".join(RELAY_DOMAINS + ((TRANSIT_DOMAIN,) if relay_to else ())),
        "cert": certs.server_cert,
        "key": certs.server_key,
    }
    main_cf = MAIN_CF.format(**values)
    master_cf = MASTER_CF.format(port=port, smtps_port=smtps_port)
    if relay_to is not None:
        main_cf += TRANSIT_CF.format(root=root)
        master_cf += TRANSIT_MASTER_CF
        (config / "transport").write_text(f"{TRANSIT_DOMAIN} smtp:[{LOOPBACK}]:{relay_to}\n")
        if defer:
            main_cf += "defer_transports = smtp\n"
        if rate_delay is not None:
            main_cf += f"smtp_destination_rate_delay = {rate_delay}s\n"
        if body_checks is not None:
            main_cf += f"body_checks = regexp:{root}/config/body_checks\n"
            (config / "body_checks").write_text(body_checks)
    main_cf += "".join(f"{name} = {value}\n" for name, value in (settings or {}).items())
    (config / "main.cf").write_text(main_cf)
    (config / "master.cf").write_text(master_cf)
    (config / "recipient_access").write_text(RECIPIENT_ACCESS)
    _sasl_users(root, users)
    instance = Postfix(root, port, smtps_port, root / "maillog")
    started = False
    try:
        done = _run([postfix, "-c", str(config), "start"])
        if done.returncode != 0:
            raise PostfixError(
                f"postfix start failed ({done.returncode}): {done.stderr.strip()} "
                f"{instance.log_lines()[-5:]}"
            )
        started = True
        wait_for_port(port)
        wait_for_port(smtps_port)
        yield instance
    finally:
        if started:
            _run([postfix, "-c", str(config), "stop"])
            _wait_for_master_exit(root)
        shutil.rmtree(root, ignore_errors=True)


def _wait_for_master_exit(root: Path, timeout: float = 10) -> None:
    """``postfix stop`` returns at once; the master and its children go a moment later."""
    pid_file = root / "queue" / "pid" / "master.pid"
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
