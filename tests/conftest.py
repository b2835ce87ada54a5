from __future__ import annotations

import os

import pytest

from smtpbench.build_info import stale
from tests.servers import postfix_binary


def pytest_configure(config: pytest.Config) -> None:
    # A compiled build (SMTPBENCH_COMPILE=1) left behind by an edit would test the old code.
    old = stale()
    if old:
        raise pytest.UsageError(
            f"the compiled engine is older than {', '.join(old)}: build it again "
            "(SMTPBENCH_COMPILE=1 pip install -e .), or test the sources with "
            "SMTPBENCH_INTERPRETED=1"
        )
    config.addinivalue_line(
        "markers",
        "end_to_end: runs the engine or the command against a server; left out of mutation "
        "testing (bench/mutation.py), which wants each module's fast tests",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Postfix tests are skipped on a machine without Postfix, but not in CI, whose script
    installs it: there a missing Postfix fails those tests instead of hiding them."""
    if postfix_binary("smtp-sink") is not None or os.environ.get("CI"):
        return
    skip = pytest.mark.skip(reason="Postfix (smtp-sink) is not installed")
    for item in items:
        if "postfix" in item.keywords:
            item.add_marker(skip)
