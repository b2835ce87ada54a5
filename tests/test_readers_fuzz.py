"""Every reader of user files, fed random bytes and random mutations of valid files:
recordings, scenarios, threshold expressions and results folders. Whatever comes in,
only the reader's own error comes out, on one line, naming where the problem is."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smtpbench import exitcodes
from smtpbench.metrics.results import METRICS_FILE, SUMMARY_FILE, ResultsError, read_results
from smtpbench.recording.reader import RecordingError, read_recording
from smtpbench.scenario import ScenarioError, parse_scenario
from smtpbench.thresholds import ThresholdError, parse_threshold
from tests.commands import smtpbench

ROOT = Path(__file__).resolve().parent.parent
RECORDING = (ROOT / "scenarios" / "recordings" / "default-sink.jsonl").read_bytes()
SCENARIOS = [p.read_text() for p in sorted((ROOT / "scenarios").glob("*.toml"))]
THRESHOLDS = [
    "p99(DATA) < 250ms",
    "rate(4xx) < 1%",
    "p50(message) <= 2s",
    "throughput > 100/s",
    "count(errors) == 0",
]
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    """``original`` with a few random edits: bytes flipped, cut, spliced, lines moved."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "delete", "lines"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=30))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 40))]
        else:
            lines = bytes(data).split(b"\n")
            order = draw(st.permutations(range(len(lines))))
            data = bytearray(
                b"\n".join(lines[i] for i in order[: draw(st.integers(0, len(order)))])
            )
    return bytes(data)


@st.composite
def recording_with_a_changed_field(draw: st.DrawFn) -> bytes:
    """The example recording with one field of one session (anywhere inside it) replaced
    by a random JSON value."""
    lines = RECORDING.decode().splitlines()
    index = draw(st.integers(1, len(lines) - 1))
    session = json.loads(lines[index])
    node = session
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        key = draw(st.sampled_from(keys))
        child = node[key]
        if isinstance(child, dict | list) and child and draw(st.booleans()):
            node = child
            continue
        node[key] = draw(json_values)
        break
    lines[index] = json.dumps(session)
    return ("\n".join(lines) + "\n").encode()


def _one_line(error: Exception, where: str) -> None:
    text = str(error)
    assert "\n" not in text and "\r" not in text, text
    assert text.startswith(where), text


def _read_recording(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / f"{uuid.uuid4().hex}.jsonl"
    path.write_bytes(data)
    try:
        read_recording(path)
    except RecordingError as err:
        _one_line(err, str(path))


@FUZZ
@given(data=st.binary(max_size=2000))
def test_random_bytes_as_a_recording(tmp_path: Path, data: bytes) -> None:
    _read_recording(tmp_path, data)


@FUZZ
@given(data=mutated(RECORDING))
def test_a_mutated_recording(tmp_path: Path, data: bytes) -> None:
    _read_recording(tmp_path, data)


@FUZZ
@given(data=recording_with_a_changed_field())
def test_a_recording_with_a_field_of_any_type(tmp_path: Path, data: bytes) -> None:
    _read_recording(tmp_path, data)


def _read_scenario(text: str) -> None:
    try:
        parse_scenario(text, file="fuzzed.toml")
    except ScenarioError as err:
        _one_line(err, "fuzzed.toml")


@FUZZ
@given(text=st.text(max_size=400))
def test_random_text_as_a_scenario(text: str) -> None:
    _read_scenario(text)


@FUZZ
@given(data=st.sampled_from(SCENARIOS).flatmap(lambda s: mutated(s.encode())))
def test_a_mutated_scenario(data: bytes) -> None:
    _read_scenario(data.decode("utf-8", "replace"))


@FUZZ
@given(
    scenario=st.sampled_from(SCENARIOS),
    table=st.sampled_from(["load", "session", "tls", "auth", "sink", "thresholds", "timeouts"]),
    key=st.sampled_from(
        ["rate", "concurrency", "duration", "mode", "ca_file", "mechanism", "size", "delay",
         "checks", "recipients", "x"]
    ),
    value=st.sampled_from(
        ['""', "0", "-1", "1e999", "true", "[]", "[[1]]", "{}", '"5m"', '"nan"', "nan", "inf",
         '"\\u0000"', "{ a = 1 }", "9999999999999999999"]
    ),
)  # fmt: skip
def test_a_scenario_with_a_value_of_any_kind(
    scenario: str, table: str, key: str, value: str
) -> None:
    _read_scenario(f"{scenario}\n[{table}]\n{key} = {value}\n")
    _read_scenario(f"[{table}]\n{key} = {value}\n")


@FUZZ
@given(text=st.text(max_size=60) | st.sampled_from(THRESHOLDS).flatmap(
    lambda t: mutated(t.encode()).map(lambda b: b.decode("utf-8", "replace"))
))  # fmt: skip
def test_threshold_expressions(text: str) -> None:
    try:
        parse_threshold(text)
    except ThresholdError as err:
        message = str(err)  # the expression quoted first, then what is wrong with it
        assert "\n" not in message and "\r" not in message, message
        assert message.startswith(("'", '"')), message


@pytest.fixture(scope="module")
def results_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fuzz-results")
    done = smtpbench("run", "--headless", "--sessions", "8", "--rate", "50", "--out", str(out))
    assert done.returncode == exitcodes.OK, done.stderr
    [folder] = list(out.iterdir())
    return folder


def _read_results_copy(results_folder: Path, tmp_path: Path, name: str, data: bytes) -> None:
    folder = tmp_path / uuid.uuid4().hex
    shutil.copytree(results_folder, folder)
    (folder / name).write_bytes(data)
    try:
        read_results(folder)
    except ResultsError as err:
        _one_line(err, str(folder))


@FUZZ
@given(data=st.data())
def test_a_mutated_summary(results_folder: Path, tmp_path: Path, data: st.DataObject) -> None:
    original = (results_folder / SUMMARY_FILE).read_bytes()
    if data.draw(st.booleans()):
        changed = data.draw(mutated(original))
    else:
        summary = json.loads(original)
        path = [data.draw(st.sampled_from(sorted(summary)))]
        node = summary[path[0]]
        while isinstance(node, dict) and node and data.draw(st.booleans()):
            path.append(data.draw(st.sampled_from(sorted(node))))
            node = node[path[-1]]
        parent = summary
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = data.draw(json_values)
        changed = json.dumps(summary).encode()
    _read_results_copy(results_folder, tmp_path, SUMMARY_FILE, changed)


@FUZZ
@given(data=st.data())
def test_a_mutated_metrics_file(results_folder: Path, tmp_path: Path, data: st.DataObject) -> None:
    original = (results_folder / METRICS_FILE).read_bytes()
    _read_results_copy(results_folder, tmp_path, METRICS_FILE, data.draw(mutated(original)))


@FUZZ
@given(data=st.binary(max_size=3000))
def test_random_bytes_as_results(results_folder: Path, tmp_path: Path, data: bytes) -> None:
    _read_results_copy(results_folder, tmp_path, SUMMARY_FILE, data)
    _read_results_copy(results_folder, tmp_path, METRICS_FILE, data)
