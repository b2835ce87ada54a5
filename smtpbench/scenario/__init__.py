"""What to send: scenario models, the TOML loader and writer, and the message factory.

This package stays on the standard library (plus ``smtpbench.units``,
``smtpbench.protocol`` and ``smtpbench.faults``): it describes traffic, it does
not send any.
"""

from smtpbench.scenario.content import MessageFactory, MessagePlan, SessionPlan, run_seed
from smtpbench.scenario.errors import ScenarioError
from smtpbench.scenario.loader import available_scenarios, load_scenario, parse_scenario
from smtpbench.scenario.model import (
    DEFAULT_SUCCESS,
    DEFAULT_TIMEOUTS,
    Load,
    Scenario,
    Session,
    Stage,
    Target,
    default_scenario,
)
from smtpbench.scenario.overrides import summarize_load, with_overrides
from smtpbench.scenario.sizes import IntRange, SizeDistribution
from smtpbench.scenario.writer import scenario_to_toml

__all__ = [
    "DEFAULT_SUCCESS",
    "DEFAULT_TIMEOUTS",
    "IntRange",
    "Load",
    "MessageFactory",
    "MessagePlan",
    "Scenario",
    "ScenarioError",
    "Session",
    "SessionPlan",
    "SizeDistribution",
    "Stage",
    "Target",
    "available_scenarios",
    "default_scenario",
    "load_scenario",
    "parse_scenario",
    "run_seed",
    "scenario_to_toml",
    "summarize_load",
    "with_overrides",
]
