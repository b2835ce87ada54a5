"""``smtpbench probe``: the SMTP health check an admin does by hand, automated and explained."""

from smtpbench.probe.model import Check, Exchange, ProbeReport
from smtpbench.probe.run import ProbeOptions, probe

__all__ = ["Check", "Exchange", "ProbeOptions", "ProbeReport", "probe"]
