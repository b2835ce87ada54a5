"""Command-line overrides of a scenario, and the one-line summary of its load."""

from __future__ import annotations

from dataclasses import replace

from smtpbench.faults import EMPTY_FAULTS
from smtpbench.scenario.formatting import human_duration, human_rate
from smtpbench.scenario.model import Load, Scenario, Target
from smtpbench.units import parse_duration, parse_rate


def with_overrides(
    scenario: Scenario,
    *,
    host: str | None = None,
    port: int | None = None,
    rate: float | str | None = None,
    concurrency: int | None = None,
    duration: float | str | None = None,
    sessions: int | None = None,
    seed: int | None = None,
    max_concurrency: int | None = None,
    source: tuple[str, ...] | None = None,
) -> Scenario:
    """``scenario`` with what the command line says instead; ``None`` keeps the scenario's value.

    ``rate`` switches to the open model at that constant rate (stages are
    dropped); ``concurrency`` switches to the closed model. ``sessions`` without
    ``duration`` drops the scenario's duration, so that asking for N sessions
    gets N sessions (stages still end the run when they do). ``host`` drops the
    ``[sink]`` faults, which only the embedded sink can inject. Rates and
    durations may be numbers or strings such as ``"300/s"`` and ``"5m"``.
    Raises ``ValueError`` for values that make no sense, saying which.
    """
    if rate is not None and concurrency is not None:
        raise ValueError(
            "rate and concurrency exclude each other: a rate sets how often sessions start "
            "(open model), concurrency how many are kept in flight (closed model)"
        )
    load = scenario.load
    changes: dict[str, object] = {}
    if rate is not None:
        value = parse_rate(rate)
        if value <= 0:
            raise ValueError(f"the rate must be above 0, got {rate!r}")
        changes |= {"mode": "rate", "rate": value, "stages": (), "start_rate": 0.0}
    if concurrency is not None:
        _at_least("concurrency", concurrency, 1)
        changes |= {"mode": "concurrency", "concurrency": concurrency}
    if max_concurrency is not None:
        _at_least("max_concurrency", max_concurrency, 1)
        if changes.get("mode", load.mode) == "concurrency":
            raise ValueError(
                "max_concurrency caps an arrival rate's sessions in flight; "
                "with a fixed concurrency, change the concurrency instead"
            )
        changes["max_concurrency"] = max_concurrency
    if duration is not None:
        seconds = parse_duration(duration)
        if seconds <= 0:
            raise ValueError(f"the duration must be above 0, got {duration!r}")
        changes["duration"] = seconds
    if sessions is not None:
        _at_least("sessions", sessions, 1)
        changes["sessions"] = sessions
        if duration is None:
            changes["duration"] = None
    if changes:
        load = replace(load, **changes)  # type: ignore[arg-type]

    target, sink = scenario.target, scenario.sink
    if host is not None:
        sink = EMPTY_FAULTS
    if host is not None or port is not None or source is not None:
        target = Target(
            host=host if host is not None else target.host,
            port=port if port is not None else target.port,
            source=source if source is not None else target.source,
        )
    if seed is not None:
        _at_least("seed", seed, 0)
    given = {
        "--target": f"{target}" if host is not None or port is not None else None,
        "--rate": rate,
        "--concurrency": concurrency,
        "--duration": duration,
        "--sessions": sessions,
        "--max-concurrency": max_concurrency,
        "--source": ", ".join(source) if source is not None else None,
    }
    changed = ", ".join(f"{flag} {value}" for flag, value in given.items() if value is not None)
    return replace(
        scenario,
        description=_described(scenario.description, changed),
        target=target,
        load=load,
        seed=seed if seed is not None else scenario.seed,
        sink=sink,
    )


def _described(description: str, changed: str) -> str:
    """The description, saying what the command line changed: the scenario file's words
    may no longer describe what ran ("300/s against the embedded sink")."""
    if not changed or not description:
        return description
    return f"{description} (as run, changed on the command line: {changed})"


def _at_least(name: str, value: int, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name} must be a whole number of at least {least}, got {value!r}")


def summarize_load(scenario: Scenario) -> str:
    """One line for people: ``300/s for 5m (uniform arrivals), cap 500``."""
    line = _summarize_load(scenario)
    if scenario.delivery.retries:
        line += ", MTA-like delivery (4xx retried)"
    return line


def _summarize_load(scenario: Scenario) -> str:
    load = scenario.load
    if load.mode == "concurrency":
        noun = "session" if load.concurrency == 1 else "sessions"
        return f"{load.concurrency} concurrent {noun} {_end(load)}"
    if load.stages:
        steps = [human_rate(load.start_rate)]
        steps += [f"{human_rate(s.rate)} over {human_duration(s.duration)}" for s in load.stages]
        shape = "ramp " + " -> ".join(steps)
        if load.duration is not None and load.duration > load.ramp_duration:
            shape += " (then held)"
    else:
        shape = human_rate(load.rate)
    separator = ", " if load.stages else " "
    return f"{shape}{separator}{_end(load)} ({load.arrivals} arrivals), cap {load.max_concurrency}"


def _end(load: Load) -> str:
    if load.sessions is None:
        return f"for {human_duration(load.duration or 0.0)}"
    noun = "session" if load.sessions == 1 else "sessions"
    if load.duration is None:
        return f"until {load.sessions} {noun}"
    return f"until {load.sessions} {noun} or {human_duration(load.duration)}"
