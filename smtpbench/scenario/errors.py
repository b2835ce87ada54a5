"""The one exception a scenario file can raise, pointing at the file and the key."""

from __future__ import annotations

import re

_TOML_LINE = re.compile(r"\(at line (\d+), column \d+\)")


class ScenarioError(Exception):
    """A scenario that cannot be used, with where the problem is.

    ``key`` is dotted the way the file is written (``load.rate``,
    ``load.stages[1].rate``, ``session.size.median``, ``sink.delay.DATA``) so
    that the message can be acted on without reading the code. ``line`` is set
    for TOML syntax errors, whose position is all there is to say.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        key: str | None = None,
        line: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.key = key
        self.line = line

    def __str__(self) -> str:
        where = [part for part in (self.file, self.key) if part]
        return ": ".join([*where, self.message])

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only arguments need help to survive pickling (multiprocessing workers).
        return (_rebuild, (self.message, self.file, self.key, self.line))

    def in_file(self, file: str | None) -> ScenarioError:
        """The same error, naming ``file`` (for errors raised before the file was known)."""
        return ScenarioError(self.message, file=file, key=self.key, line=self.line)

    @classmethod
    def from_toml(cls, error: ValueError, file: str | None) -> ScenarioError:
        text = str(error)
        match = _TOML_LINE.search(text)
        return cls(
            f"not valid TOML: {text}", file=file, line=int(match.group(1)) if match else None
        )


def _rebuild(message: str, file: str | None, key: str | None, line: int | None) -> ScenarioError:
    return ScenarioError(message, file=file, key=key, line=line)
