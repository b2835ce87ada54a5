"""Which of smtpbench's modules a compiled build makes C extensions of (with mypyc, see
``setup.py``), and which of them this process runs compiled.

``SMTPBENCH_INTERPRETED=1`` runs their sources even where a compiled build is installed
(to compare the two, or to try an edit without building again): the package installs
``SourcesFirst`` on import. Nothing here imports the rest of the package: ``setup.py``
reads the list from this file.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

# A compiled class that classes of the sources may subclass (a test's stand-in, a module
# left interpreted) says so with ``@mypyc_attr(allow_interpreted_subclasses=True)``; a
# call through it still goes straight to the compiled method when the object is compiled.
try:
    from mypy_extensions import mypyc_attr
except ImportError:  # only mypyc reads it; where mypy's extensions are absent it does nothing
    _Class = TypeVar("_Class")

    def mypyc_attr(*_: object, **__: object) -> Callable[[_Class], _Class]:  # type: ignore[misc]
        return lambda cls: cls


# The engine's hot path: a session's protocol, timing and counting, the reactor, and
# message generation. Each must compile with mypyc (strict about its type hints).
COMPILED_MODULES = (
    "smtpbench.protocol.replies",
    "smtpbench.protocol.capabilities",
    "smtpbench.protocol.client",
    "smtpbench.protocol.commands",
    "smtpbench.protocol.message",
    "smtpbench.engine.session",
    "smtpbench.engine.conversation",
    "smtpbench.engine.reactor",
    "smtpbench.engine.transcript",
    "smtpbench.metrics.events",
    "smtpbench.metrics.recorder",
    "smtpbench.scenario.content",
    "smtpbench.scenario.templates",
)
_SOURCE = ".py"
INTERPRETED_VARIABLE = "SMTPBENCH_INTERPRETED"


class SourcesFirst(importlib.abc.MetaPathFinder):
    """Imports the listed modules from their sources, ahead of their compiled files."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in COMPILED_MODULES or not path:
            return None
        leaf = fullname.rpartition(".")[2] + _SOURCE
        for folder in path:
            source = os.path.join(folder, leaf)
            if os.path.exists(source):
                return importlib.util.spec_from_file_location(fullname, source)
        return None


def run_sources_if_asked() -> None:
    """With ``SMTPBENCH_INTERPRETED`` set (not empty, not 0), run the sources."""
    if os.environ.get(INTERPRETED_VARIABLE, "") in ("", "0"):
        return
    if not any(isinstance(finder, SourcesFirst) for finder in sys.meta_path):
        sys.meta_path.insert(0, SourcesFirst())


def _origin(name: str) -> str | None:
    spec = importlib.util.find_spec(name)
    return spec.origin if spec is not None else None


def compiled() -> list[str]:
    """The modules of the list this process imports compiled (an extension, not source)."""
    found = []
    for name in COMPILED_MODULES:
        origin = _origin(name)
        if origin is not None and not origin.endswith(_SOURCE):
            found.append(name)
    return found


def engine_build() -> str:
    """How this process runs the engine, in words: for ``--version``, results and
    benchmark tables."""
    done = compiled()
    if not done:
        return "interpreted"
    if len(done) == len(COMPILED_MODULES):
        return "compiled with mypyc"
    return f"partly compiled with mypyc ({len(done)} of {len(COMPILED_MODULES)} modules)"


def stale() -> list[str]:
    """Compiled modules whose source changed since they were built (an in-place build
    left behind by an edit): they would run the old code."""
    old = []
    for name in compiled():
        origin = _origin(name)
        assert origin is not None
        source = os.path.join(os.path.dirname(origin), name.rpartition(".")[2] + _SOURCE)
        if os.path.exists(source) and os.path.getmtime(source) > os.path.getmtime(origin):
            old.append(source)
    return old
