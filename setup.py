"""Builds smtpbench. The package is pure Python. With ``SMTPBENCH_COMPILE=1`` the engine's
hot path is also compiled to C extensions with mypyc: the modules in ``COMPILED_MODULES``
of ``smtpbench/build_info.py`` (a session's protocol, timing and counting, the reactor,
message generation), which makes the engine about half as fast again per core. The build
then needs a C compiler, and stops with its error when there is none.

    SMTPBENCH_COMPILE=1 pip install .

The compiled modules sit beside their sources and are imported in their place; the
sources stay the reference. ``smtpbench --version`` says which of the two a process runs,
and ``SMTPBENCH_INTERPRETED=1`` runs the sources in a compiled build.
"""

from __future__ import annotations

import os

from setuptools import setup


def compiled_modules() -> list[str]:
    """The list in ``smtpbench/build_info.py``, read without importing the package."""
    scope: dict[str, object] = {}
    with open(os.path.join("smtpbench", "build_info.py"), encoding="utf-8") as source:
        exec(compile(source.read(), source.name, "exec"), scope)
    names = scope["COMPILED_MODULES"]
    assert isinstance(names, tuple)
    return [name.replace(".", "/") + ".py" for name in names]


def ext_modules() -> list:
    if os.environ.get("SMTPBENCH_COMPILE", "") not in ("1", "yes", "true"):
        return []
    from mypyc.build import mypycify

    # Only the compiled modules must type-check: the others are read for their types.
    return mypycify([*compiled_modules(), "--follow-imports=silent"], opt_level="3")


setup(ext_modules=ext_modules())
