"""``unsealer custody import``: hand the shares of an existing ``vault operator init`` to custody.

For a Vault initialised by hand. The person pipes or pastes what ``vault operator init``
printed (terminal format or ``-format=json``) on stdin; nothing of it is echoed, on a terminal
or anywhere else. The shares are parsed into wipeable values at once, placed on the custodians
by :func:`~unsealer.custody.distribute` (the invariant decides the layout; whatever a custodian
cannot take goes to a new 0600 file in ``--fallback-dir``, whose path the error names), and the
report says which key numbers each custodian got.

The root token in the output is not the unsealer's business: it is written to
``--root-token-file`` (new, 0600) or printed once with ``--print-root-token``, else dropped with
a note (the person still has the original output).

Everything that can be refused (config, fallback directory, token file) is checked *before* the
paste is read, so nobody pastes shares into a command that then says no.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from plumbing.options import OptionParser
from unsealer.commands import options
from unsealer.commands.custody_access import build, load_custody, placement_lines
from unsealer.commands.runner import OK, Clients, execute, usage_error
from unsealer.commands.secret_io import TokenFile, check_fallback_dir, read_secret_input
from unsealer.custody import CustodyConfig, distribute
from unsealer.init_output import InitOutput, parse_init_output
from unsealer.shares import zero

NAME = "custody import"

EPILOG = """\
examples:
  vault operator init | unsealer custody import --custody-config custody.yaml
  unsealer custody import --custody-config custody.yaml --root-token-file ./root-token
      (then paste the output and press Ctrl-D; nothing is echoed)

exit status:
  0  every share is at its custodians
  1  a custodian could not store its shares (they are in the fallback file named on stderr)
  2  bad options, custody config or input; nothing was stored
"""


def add_parser(custody: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser: OptionParser = custody.add_parser(
        "import",
        help="store the shares of `vault operator init` output (stdin) at the custodians",
        description="Read the output of `vault operator init` from stdin (terminal or JSON "
        "format; not echoed) and store its unseal shares at the custodians of the custody "
        "config, so that no custodian alone holds the threshold.",
        epilog=EPILOG,
        env_prefix="UNSEALER_",
    )
    options.add_custody_config(parser)
    options.add_kubernetes(parser)
    parser.option(
        "--threshold", type=options.count, default=None, metavar="T",
        help="Vault's key threshold, when neither the input nor the custody config says it",
    )
    options.add_distribution(parser)
    options.add_root_token_output(parser)
    options.add_command_logging(parser)
    parser.set_defaults(entry=main)


def main(args: argparse.Namespace) -> int:
    job = ImportJob(args)
    try:
        return execute(args, name=NAME, handler=job.run, prepare=job.prepare)
    finally:
        job.close()


class ImportJob:
    """One import: checks and the paste (``prepare``), then distribution (``run``)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.config: CustodyConfig | None = None
        self.fallback_dir = Path(".")
        self.token_file: TokenFile | None = None
        self.output: InitOutput | None = None
        self.threshold = 0

    def prepare(self) -> None:
        args = self.args
        self.config = load_custody(args, require_files=False)
        self.fallback_dir = check_fallback_dir(args.fallback_dir)
        if args.root_token_file:
            self.token_file = TokenFile.create(Path(args.root_token_file))
        raw = read_secret_input()
        try:
            self.output = parse_init_output(bytes(raw))
        finally:
            zero(raw)
        self.threshold = self._threshold(self.output, self.config)

    def _threshold(self, output: InitOutput, config: CustodyConfig) -> int:
        count = len(output.shares)
        stated: dict[str, int | None] = {
            "the input": output.threshold,
            "--threshold": self.args.threshold,
            f"the custody config {config.source}": config.threshold,
        }
        known = {source: value for source, value in stated.items() if value is not None}
        if not known:
            usage_error("the input does not state the key threshold: pass --threshold")
        if len(set(known.values())) > 1:
            usage_error("the key threshold differs: " + ", ".join(
                f"{source} says {value}" for source, value in known.items()
            ))
        threshold = next(iter(known.values()))
        if threshold > count:
            usage_error(f"threshold {threshold} is more than the {count} shares in the input")
        if config.shares is not None and config.shares != count:
            usage_error(
                f"the input holds {count} shares but the custody config {config.source} "
                f"says {config.shares}"
            )
        return threshold

    async def run(self, args: argparse.Namespace, clients: Clients) -> int:
        assert self.config is not None and self.output is not None
        output = self.output
        self._root_token(output)
        custodians = await build(self.config, clients)
        distribution = await distribute(
            list(output.shares),
            threshold=self.threshold,
            config=self.config,
            custodians=custodians,
            fallback_dir=self.fallback_dir,
            replace=args.replace,
            allow_unsafe=args.allow_unsafe_custody,
        )
        print("\n".join(
            placement_lines(distribution, count=len(output.shares), threshold=self.threshold)
        ))
        return OK

    def _root_token(self, output: InitOutput) -> None:
        token = output.root_token
        if token is None:
            if self.token_file is not None:
                self.token_file.abandon()
                print(f"note: the input holds no root token; {self.token_file.path} was not "
                      "created", file=sys.stderr)
            return
        if self.token_file is not None:
            self.token_file.write(token.reveal())
            print(f"Root token written to {self.token_file.path} (mode 0600)")
        if self.args.print_root_token:
            print(f"Initial Root Token: {token.reveal()}")
        if self.token_file is None and not self.args.print_root_token:
            print("note: the root token in the input was not kept (--root-token-file or "
                  "--print-root-token keep it); revoke it once you no longer need it",
                  file=sys.stderr)

    def close(self) -> None:
        if self.output is not None:
            self.output.wipe()
        if self.token_file is not None:
            self.token_file.abandon()
