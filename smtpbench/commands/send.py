"""``smtpbench send``: one message, one transaction, and what was said.

Exit codes: 0 accepted (or stopped where --quit-after asked); 2 bad flags or
files; 4 the server unreachable; 8 refused by the server (session, sender, a
recipient, the message); 9 TLS failed; 10 AUTH failed; 11 the conversation
broke off (closed, timed out, garbled); 3 interrupted by Ctrl-C.
"""

from __future__ import annotations

import argparse

import trio
from rich.console import Console

from smtpbench import exitcodes
from smtpbench.engine.transport import TargetError
from smtpbench.send.options import UsageError, options_from_args
from smtpbench.send.session import send_one
from smtpbench.send.transcript import result_json, result_renderable


def run_send(args: argparse.Namespace, console: Console | None = None) -> int:
    errors = Console(stderr=True)
    try:
        options = options_from_args(args)
    except UsageError as err:
        errors.print(f"[red]error:[/] {err}", highlight=False)
        return exitcodes.BAD_CONFIGURATION
    except (KeyboardInterrupt, EOFError):
        errors.print("[red]error:[/] no password given", highlight=False)
        return exitcodes.BAD_CONFIGURATION
    try:
        result = trio.run(send_one, options)
    except TargetError as err:
        errors.print(f"[red]error:[/] {err}", highlight=False)
        return exitcodes.TARGET_UNUSABLE
    except KeyboardInterrupt:
        errors.print("interrupted: the connection was closed", highlight=False)
        return exitcodes.INTERRUPTED
    if options.json:
        print(result_json(result))
    else:
        (console or Console(highlight=False)).print(result_renderable(result), soft_wrap=True)
    return result.exit_code


__all__ = ["run_send"]
