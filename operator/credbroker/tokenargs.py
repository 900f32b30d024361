"""The TOKEN argument of the debugging commands, given inline or on standard input."""

from __future__ import annotations

import argparse
import asyncio
import sys

READ_FROM_STDIN = "-"


def add_token_argument(parser: argparse.ArgumentParser, *, what: str) -> None:
    """Add the positional TOKEN argument; ``what`` names the token in the help text."""
    parser.add_argument(
        "token",
        metavar="TOKEN",
        help=f"{what}, or {READ_FROM_STDIN} to read it from stdin, which keeps it out of the "
        "process list and the shell history",
    )


async def read_token(argument: str) -> str:
    """Return the token given as ``argument``, or read from stdin for ``-``.

    Raises ``ValueError`` when the token is empty.
    """
    if argument == READ_FROM_STDIN:
        text: str = await asyncio.to_thread(sys.stdin.read)
    else:
        text = argument
    token = text.strip()
    if not token:
        raise ValueError("the token is empty. Pass it as TOKEN, or on stdin with -")
    return token
