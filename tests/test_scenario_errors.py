"""Every kind of mistake in a scenario file is reported with the file and the dotted key."""

from __future__ import annotations

import pickle

import pytest

from smtpbench.scenario import ScenarioError, parse_scenario

FILE = "scenarios/broken.toml"


def size(inner: str) -> str:
    """A [session] table whose size is the inline table ``{ inner }``."""
    return f"[session]\nsize = {{ {inner} }}"


BROKEN = [
    # (TOML text, expected key, a fragment of the message)
    ('[load]\nrate = "fast"', "load.rate", "expected a rate such as 300/s or 1200/m, got 'fast'"),
    ("[load]\nrate = -3", "load.rate", "cannot be negative"),
    ("[load]\nrate = 0", "load.rate", "must be above 0"),
    ("[load]\nrate = inf", "load.rate", "expected a rate"),
    ("[load]\nrate = [1]", "load.rate", "got [1] (array)"),
    ("[load]\nconcurrency = 10\nrate = 5", "load.concurrency", "load.rate"),
    ("[load]\nconcurrency = 10\nstages = [{duration=1, rate=1}]", "load.concurrency", "stages"),
    ('[load]\nmode = "concurrency"\nrate = 5', "load.rate", "load.concurrency"),
    ('[load]\nconcurrency = 4\narrivals = "poisson"', "load.arrivals", "open model"),
    ("[load]\nconcurrency = 4\nmax_concurrency = 9", "load.max_concurrency", "open model"),
    ('[load]\nmode = "rate"\nconcurrency = 4', "load.concurrency", "max_concurrency"),
    ('[load]\nmode = "open"', "load.mode", "'rate' or 'concurrency'"),
    ("[load]\nconcurrency = 0", "load.concurrency", "at least 1"),
    ('[load]\nconcurrency = "ten"', "load.concurrency", "whole number"),
    ("[load]\nmax_concurrency = 0", "load.max_concurrency", "at least 1"),
    ("[load]\nbacklog = -1", "load.backlog", "at least 0"),
    ("[load]\nsessions = 0", "load.sessions", "at least 1"),
    ("[load]\nsessions = 1.5", "load.sessions", "whole number"),
    ('[load]\nduration = "0s"', "load.duration", "above 0"),
    ('[load]\nduration = "soon"', "load.duration", "expected a duration"),
    ('[load]\ngrace = "-1s"', "load.grace", "expected a duration"),
    ("[load]\nstages = []", "load.stages", "at least one stage"),
    ("[load]\nstages = 3", "load.stages", "expected an array"),
    ("[load]\nstages = [5]", "load.stages[0]", "expected a table"),
    (
        '[load]\nstages = [{duration = "1s", rate = 1}, {duration = "1s"}]',
        "load.stages[1].rate",
        "missing",
    ),
    ('[load]\nstages = [{duration = "1s", rate = "x"}]', "load.stages[0].rate", "expected a rate"),
    ("[load]\nstages = [{duration = 0, rate = 1}]", "load.stages[0].duration", "above 0"),
    (
        '[load]\nstages = [{duration = 1, rate = 1, ramp = "linear"}]',
        "load.stages[0].ramp",
        "unknown key",
    ),
    ("[load]\nstages = [{duration = 1, rate = 0}]", "load.stages", "rate 0"),
    ("[load]\nrate = 5\nstages = [{duration = 1, rate = 1}]", "load.rate", "load.stages"),
    ("[load]\nstart_rate = 5", "load.start_rate", "load.stages"),
    ('[load]\narrivals = "bursty"', "load.arrivals", "'uniform' or 'poisson'"),
    ("[load]\nrat = 5", "load.rat", "did you mean 'rate'?"),
    ("[lod]\nrate = 5", "lod", "did you mean 'load'?"),
    ("load = 5", "load", "expected a table, got 5 (integer)"),
    ("nmae = 'x'", "nmae", "did you mean 'name'?"),
    ("name = ''", "name", "short name"),
    ("seed = -1", "seed", "at least 0"),
    ("seed = 'abc'", "seed", "whole number"),
    ("description = 3", "description", "expected a string"),
    ("[target]\nport = 0", "target.port", "between 1 and 65535"),
    ("[target]\nport = 70000", "target.port", "between 1 and 65535"),
    ('[target]\nport = "25"', "target.port", "whole number"),
    ('[target]\nhost = ""', "target.host", "embedded sink"),
    ('[target]\nhots = "x"', "target.hots", "did you mean 'hosts'?"),
    ('[session]\ngreeting = "HI"', "session.greeting", "'EHLO' or 'HELO'"),
    ('[session]\nmessages = "5..1"', "session.messages", "low to high"),
    ('[session]\nmessages = "many"', "session.messages", "range such as"),
    ("[session]\nrecipients = 0", "session.recipients", "at least 1"),
    ("[session]\nrecipients = -2", "session.recipients", "negative"),
    ('[session]\nrset_between_messages = "yes"', "session.rset_between_messages", "true or false"),
    ('[session]\nnoop = "150%"', "session.noop", "between 0% and 100%"),
    ('[session]\nnoop = "often"', "session.noop", "expected a share"),
    ('[session]\nsize = "big"', "session.size", "expected a size"),
    ("[session]\nsize = 10", "session.size", "between 512"),
    ('[session]\nsize = "2GiB"', "session.size", "between 512"),
    (size('distribution = "normal"'), "session.size.distribution", "'lognormal'"),
    (size('median = "1KiB"'), "session.size.distribution", "missing"),
    (size('distribution = "lognormal", sigma = 1'), "session.size.median", "missing"),
    (
        size('distribution = "lognormal", median = "x", sigma = 1'),
        "session.size.median",
        "expected a size",
    ),
    (
        size('distribution = "lognormal", median = "1KiB", sigma = 0'),
        "session.size.sigma",
        "above 0",
    ),
    (
        size('distribution = "lognormal", median = "1KiB", sigma = "wide"'),
        "session.size.sigma",
        "expected a number",
    ),
    (
        size('distribution = "lognormal", median = "20MiB", sigma = 1'),
        "session.size.median",
        "outside",
    ),
    (
        size('distribution = "lognormal", median = "2KiB", sigma = 1, max = "1KiB"'),
        "session.size.median",
        "outside 512..1KiB",
    ),
    (
        size('distribution = "lognormal", median = "2KiB", sigma = 1, min = "4KiB", max = "1KiB"'),
        "session.size.max",
        "below min",
    ),
    (size('distribution = "uniform", min = "2KiB"'), "session.size.max", "missing"),
    (size('distribution = "uniform", min = "2KiB", max = "1KiB"'), "session.size.max", "below min"),
    (
        size('distribution = "uniform", min = "1KiB", max = "2KiB", sigma = 1'),
        "session.size.sigma",
        "unknown key",
    ),
    (size('distribution = "uniform", mni = "1KiB", max = "2KiB"'), "session.size.min", "missing"),
    (size('distribution = "choice", sizes = []'), "session.size.sizes", "at least one"),
    (size('distribution = "choice", sizes = "1KiB"'), "session.size.sizes", "expected an array"),
    (
        size('distribution = "choice", sizes = ["1KiB", "x"]'),
        "session.size.sizes[1]",
        "expected a size",
    ),
    (
        size('distribution = "choice", sizes = ["1KiB"], weights = [1, 2]'),
        "session.size.weights",
        "2 weights for 1 sizes",
    ),
    (
        size('distribution = "choice", sizes = ["1KiB", "2KiB"], weights = [1, -2]'),
        "session.size.weights[1]",
        "non-negative",
    ),
    (
        size('distribution = "choice", sizes = ["1KiB"], weights = [0]'),
        "session.size.weights",
        "above 0",
    ),
    (size('distribution = "fixed"'), "session.size.size", "missing"),
    ('[session]\nrcpt_to = "user{count}@x.test"', "session.rcpt_to", "unknown placeholder"),
    ('[session]\nrcpt_to = "user{}@x.test"', "session.rcpt_to", "positional"),
    ('[session]\nrcpt_to = "user{counter:06q}@x.test"', "session.rcpt_to", "bad format spec"),
    ('[session]\nrcpt_to = "user{counter!r}@x.test"', "session.rcpt_to", "conversions"),
    ('[session]\nrcpt_to = "user{counter@x.test"', "session.rcpt_to", "bad template"),
    ('[session]\nrcpt_to = "user{counter}"', "session.rcpt_to", "exactly one '@'"),
    ('[session]\nmail_from = "a@b@c"', "session.mail_from", "exactly one '@'"),
    ('[session]\nmail_from = "a b@c.test"', "session.mail_from", "' '"),
    ('[session]\nmail_from = "a@"', "session.mail_from", "exactly one '@'"),
    ('[session]\nhelo_name = "my host"', "session.helo_name", "without spaces"),
    ('[session]\nhelo_name = "h{session.real}"', "session.helo_name", "unknown placeholder"),
    ('[session]\nsubject = "caf\\u00e9"', "session.subject", "printable ASCII"),
    ('[session]\nsubject = "two\\nlines"', "session.subject", "printable ASCII"),
    ('[session]\nsubject = "{random:{width}}"', "session.subject", "nested"),
    ("[session]\nsubjet = 'x'", "session.subjet", "did you mean 'subject'?"),
    ("[success]\nRCTP = [250]", "success.RCTP", "unknown SMTP step"),
    ('[success]\nRCPT = ["2yy"]', "success.RCPT", "expected a reply code"),
    ("[success]\nRCPT = [99]", "success.RCPT", "between 200 and 599"),
    ("[success]\nRCPT = []", "success.RCPT", "at least one reply code"),
    ("[success]\nRCPT = [true]", "success.RCPT", "(boolean)"),
    ("[success]\nconnect = [220]", "success.connect", "no reply"),
    ("[success]\nRCPT = [250]\nrcpt_to = [251]", "success.rcpt_to", "same step as success.RCPT"),
    ('[timeouts]\n"DATA ende" = "1m"', 'timeouts."DATA ende"', "unknown SMTP step"),
    ('[timeouts]\nDATA = "never"', "timeouts.DATA", "expected a duration"),
    ("[timeouts]\nDATA = 0", "timeouts.DATA", "above 0"),
    ("success = 1", "success", "expected a table"),
]


@pytest.mark.parametrize(("text", "key", "fragment"), BROKEN, ids=[b[1] for b in BROKEN])
def test_error_names_file_and_key(text: str, key: str, fragment: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, file=FILE)
    error = caught.value
    assert error.file == FILE
    assert error.key == key
    assert fragment in error.message
    assert str(error).startswith(f"{FILE}: {key}: ")


def test_message_reads_as_documented() -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario('[load]\nrate = "fast"', file="scenarios/x.toml")
    assert (
        str(caught.value)
        == "scenarios/x.toml: load.rate: expected a rate such as 300/s or 1200/m, got 'fast'"
    )


def test_toml_syntax_error_names_file_and_line() -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario('name = "x"\n\n[load]\nrate = = 5\n', file=FILE)
    error = caught.value
    assert error.file == FILE and error.key is None
    assert error.line == 4
    assert "line 4" in str(error)
    assert str(error).startswith(f"{FILE}: not valid TOML")


def test_error_without_file_still_names_key() -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario("[load]\nrate = 'fast'")
    assert str(caught.value).startswith("load.rate: ")


def test_unknown_key_lists_the_known_ones() -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario("[target]\nzzz = 1")
    assert "known: choose, host, hosts, port, source" in caught.value.message


def test_error_survives_pickling() -> None:
    error = ScenarioError("bad", file="f.toml", key="load.rate", line=3)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.file, copy.key, copy.message, copy.line) == ("f.toml", "load.rate", "bad", 3)
    assert str(copy) == str(error)
