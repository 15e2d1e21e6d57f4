"""Command-line options that can also be set from the environment.

Every option of both services has an environment variable (``SYNCD_*``, ``UNSEALER_*``) because
in a Pod the environment is the natural place for configuration, and on a laptop the flag is.
A flag given on the command line wins over the environment. Bad configuration from either
source ends the process with exit code 2 and **one** line naming the option (and the variable),
never a usage dump or a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

_TRUE = frozenset({"1", "t", "true", "yes", "y", "on"})
_FALSE = frozenset({"0", "f", "false", "no", "n", "off", ""})


def parse_bool(text: str) -> bool:
    """Parse a boolean as people write it in environment variables."""
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"invalid boolean {text!r} (use true or false)")


def positive_float(text: str) -> float:
    """A number greater than 0 (argparse ``type``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """A whole number of at least 1 (argparse ``type``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


class OptionParser(argparse.ArgumentParser):
    """An ArgumentParser whose options fall back to environment variables.

    Declare options with :meth:`option`; the environment variable name is derived from the
    parser's ``env_prefix`` and the long flag (``--log-level`` → ``SYNCD_LOG_LEVEL``) and is
    shown in ``--help``.
    """

    def __init__(self, *args: Any, env_prefix: str, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)
        self.env_prefix = env_prefix
        self._env_actions: list[tuple[argparse.Action, str]] = []

    def option(
        self,
        flag: str,
        *,
        help: str,
        default: Any = None,
        type: Callable[[str], Any] | None = None,
        choices: Sequence[Any] | None = None,
        flag_only: bool = False,
        **kwargs: Any,
    ) -> argparse.Action:
        """Add ``flag`` with an environment fallback (unless ``flag_only``)."""
        env = f"{self.env_prefix}{flag.lstrip('-').upper().replace('-', '_')}"
        shown_default = "" if default in (None, False, "") else f"; default: {default}"
        suffix = "" if flag_only else f" (env {env}{shown_default})"
        if flag_only and shown_default:
            suffix = f" ({shown_default[2:]})"
        if type is not None:
            kwargs["type"] = type
        action = self.add_argument(
            flag, help=help + suffix, default=default, choices=choices, **kwargs
        )
        if not flag_only:
            self._env_actions.append((action, env))
        return action

    def switch(self, flag: str, *, help: str) -> argparse.Action:
        """A boolean flag; its variable takes true/false."""
        env = f"{self.env_prefix}{flag.lstrip('-').upper().replace('-', '_')}"
        action = self.add_argument(flag, action="store_true", help=f"{help} (env {env})")
        self._env_actions.append((action, env))
        return action

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        for action, env in self._env_actions:
            raw = os.environ.get(env)
            if raw is not None:
                action.default = self._from_environment(action, env, raw)
        return super().parse_known_args(args, namespace)

    def _from_environment(self, action: argparse.Action, env: str, raw: str) -> Any:
        where = f"{env} (for {action.option_strings[0]})"
        if isinstance(action, argparse._StoreTrueAction):
            try:
                return parse_bool(raw)
            except ValueError as exc:
                self.error(f"{where}: {exc}")
        convert = action.type if callable(action.type) else str
        try:
            value = convert(raw)
        except argparse.ArgumentTypeError as exc:
            self.error(f"{where}: {exc}")
        except (TypeError, ValueError) as exc:
            self.error(f"{where}: invalid value {raw!r}: {exc}")
        if action.choices is not None and value not in action.choices:
            options = ", ".join(map(str, action.choices))
            self.error(f"{where}: invalid choice {raw!r} (choose from {options})")
        return value

    def error(self, message: str) -> NoReturn:
        # One line, no usage dump: the line is what ends up in `kubectl logs`.
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_telemetry_options(parser: OptionParser) -> None:
    """The logging options both services share."""
    from plumbing.telemetry import LOG_FORMATS, LOG_LEVELS  # noqa: PLC0415

    parser.option("--log-level", default="info", choices=LOG_LEVELS, help="log level")
    parser.option("--log-format", default="json", choices=LOG_FORMATS, help="log line format")


def fail(prog: str, message: str) -> NoReturn:
    """End the process with exit code 2 and one line, as a bad option does."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(2)
