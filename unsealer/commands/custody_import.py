"""``unsealer custody import``: hand shares to custody, from init output or a fallback file.

For a Vault initialised by hand. The person pipes or pastes what ``vault operator init``
printed (terminal format or ``-format=json``) on stdin; nothing of it is echoed, on a terminal
or anywhere else. The shares are parsed into wipeable values at once, placed on the custodians
by :func:`~unsealer.custody.distribute` (the invariant decides the layout; whatever a custodian
cannot take goes to a new 0600 file in ``--fallback-dir``, whose path the error names), and the
report says which key numbers each custodian got.

The root token in the output goes to one destination (:mod:`.root_token`):
``--root-token-custodian``, ``--root-token-file`` (new, 0600) or ``--print-root-token``; with
none it is dropped with a note (the person still has the original output).

``--fallback-file PATH`` reads instead the 0600 file that ``init`` or an earlier import wrote
when a custodian could not store its shares (or its root token): each entry goes back to the
custodian the file names for it (:func:`~unsealer.custody.distribution.restore`), without the
rest of the shares. A custodian that holds its entries already succeeds untouched, so the
command can be run again until every custodian has taken its own; then the person is told to
delete the file. Nothing is written anywhere else: the file still holds whatever failed.

Everything that can be refused (config, fallback directory, token destination, the fallback
file and the custodians it names) is checked *before* the paste is read or anything stored, so
nobody pastes shares into a command that then says no.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from plumbing.options import OptionParser
from unsealer.commands import options
from unsealer.commands.custody_access import build, load_custody, placement_lines
from unsealer.commands.root_token import Placed, check_destination, open_store, place_root_token
from unsealer.commands.runner import OK, Clients, CommandError, execute, usage_error
from unsealer.commands.secret_io import TokenFile, check_fallback_dir, read_secret_input
from unsealer.custody import CustodyConfig, CustodyError, distribute
from unsealer.custody.config import CustodianConfig
from unsealer.custody.distribution import Fallback, FallbackFileError, parse_fallback, restore
from unsealer.custody.file import read_private_file
from unsealer.custody.root_token import root_token_problem, store_with_retries
from unsealer.init_output import InitOutput, parse_init_output
from unsealer.shares import zero

NAME = "custody import"

EPILOG = """\
examples:
  vault operator init | unsealer custody import --custody-config custody.yaml
  unsealer custody import --custody-config custody.yaml --root-token-file ./root-token
      (then paste the output and press Ctrl-D; nothing is echoed)
  unsealer custody import --custody-config custody.yaml --fallback-file \
      ./unsealer-undelivered-20260101T000000Z-0a1b2c.txt
      (store what init could not, once the custodian works; then delete the file)

exit status:
  0  every share (and the root token, if asked) is at its custodians
  1  a custodian could not store its shares (they are in the fallback file named on stderr,
     or still in the --fallback-file), or the root token could not be stored
  2  bad options, custody config or input; nothing was stored
"""


def add_parser(custody: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser: OptionParser = custody.add_parser(
        "import",
        help="store the shares of `vault operator init` output (stdin) at the custodians",
        description="Read the output of `vault operator init` from stdin (terminal or JSON "
        "format; not echoed) and store its unseal shares at the custodians of the custody "
        "config, so that no custodian alone holds the threshold. With --fallback-file, store "
        "what init or an earlier import could not, at the custodians that file names.",
        epilog=EPILOG,
        env_prefix="UNSEALER_",
    )
    options.add_custody_config(parser)
    options.add_kubernetes(parser)
    parser.option(
        "--threshold", type=options.count, default=None, metavar="T",
        help="Vault's key threshold, when neither the input nor the custody config says it",
    )
    parser.option(
        "--fallback-file", default=None, metavar="PATH", flag_only=True,
        help="instead of stdin, read a fallback file that init or import wrote (0600) and "
        "store each share or root token in it at the custodian it names; flag only",
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
    """One import: checks and the input (``prepare``), then storing (``run``)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.config: CustodyConfig | None = None
        self.fallback_dir = Path(".")
        self.token_file: TokenFile | None = None
        self.token_custodian: CustodianConfig | None = None
        self.output: InitOutput | None = None
        self.fallback: Fallback | None = None
        self.fallback_path = Path(".")
        self.threshold = 0

    def prepare(self) -> None:
        args = self.args
        self.config = load_custody(args, require_files=False)
        if args.fallback_file:
            self.fallback_path = Path(args.fallback_file).expanduser()
            self._prepare_fallback(self.fallback_path, self.config)
            return
        self.token_custodian = check_destination(args, self.config, required=False,
                                                 doing="import")
        self.fallback_dir = check_fallback_dir(args.fallback_dir)
        if args.root_token_file:
            self.token_file = TokenFile.create(Path(args.root_token_file))
        raw = read_secret_input()
        try:
            self.output = parse_init_output(bytes(raw))
        finally:
            zero(raw)
        self.threshold = self._threshold(self.output, self.config)

    def _prepare_fallback(self, path: Path, config: CustodyConfig) -> None:
        args = self.args
        extra = [flag for flag, given in (
            ("--root-token-custodian", args.root_token_custodian),
            ("--root-token-file", args.root_token_file),
            ("--print-root-token", args.print_root_token),
            ("--threshold", args.threshold),
        ) if given]
        if extra:
            usage_error(f"--fallback-file names where each entry goes: {', '.join(extra)} "
                        "cannot be used with it")
        try:
            content = read_private_file(path)
        except FileNotFoundError:
            usage_error(f"--fallback-file {path} does not exist")
        except PermissionError as exc:
            usage_error(f"--fallback-file: refusing {path}: {exc.strerror or exc}")
        except OSError as exc:
            usage_error(f"--fallback-file {path}: {exc.strerror or type(exc).__name__}")
        try:
            self.fallback = parse_fallback(content)
        except FallbackFileError as exc:
            usage_error(f"--fallback-file {path}: {exc}")
        finally:
            zero(content)
        fallback = self.fallback
        if fallback.unplaced:
            usage_error(
                f"--fallback-file {path} holds {fallback.unplaced} share(s) that no custodian "
                "was planned for (no safe layout): fix the custody config, then import the "
                "original `vault operator init` output again"
            )
        for name, shares in fallback.shares.items():
            spec = self._custodian(name, path, config)
            if not spec.writable:
                usage_error(f"--fallback-file {path} names custodian {name!r}, a {spec.kind} "
                            "custodian the unsealer cannot write")
            if spec.shares is not None and len(shares) > spec.shares:
                usage_error(
                    f"--fallback-file {path} has {len(shares)} shares for custodian {name!r} "
                    f"but the custody config {config.source} gives it {spec.shares}: storing "
                    "them could break split custody"
                )
        for name in fallback.root_tokens:
            problem = root_token_problem(self._custodian(name, path, config))
            if problem is not None:
                usage_error(f"--fallback-file {path}: {problem}")

    @staticmethod
    def _custodian(name: str, path: Path, config: CustodyConfig) -> CustodianConfig:
        try:
            return config.custodian(name)
        except KeyError:
            usage_error(f"--fallback-file {path} names custodian {name!r}, which the custody "
                        f"config {config.source} does not have")

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
        assert self.config is not None
        if self.fallback is not None:
            return await self._run_fallback(args, clients, self.fallback)
        assert self.output is not None
        output = self.output
        custodians = await build(self.config, clients)
        placed = await self._root_token(output, clients)
        if placed.note:
            print(placed.note)
        try:
            distribution = await distribute(
                list(output.shares),
                threshold=self.threshold,
                config=self.config,
                custodians=custodians,
                fallback_dir=self.fallback_dir,
                replace=args.replace,
                allow_unsafe=args.allow_unsafe_custody,
            )
        except BaseException:
            if placed.problem is not None:  # the shares' error line follows
                print(f"unsealer {NAME}: error: {placed.problem}", file=sys.stderr, flush=True)
            raise
        print("\n".join(
            placement_lines(distribution, count=len(output.shares), threshold=self.threshold)
        ))
        if placed.problem is not None:
            raise CommandError(f"every share is at its custodians, but {placed.problem}")
        return OK

    async def _run_fallback(
        self, args: argparse.Namespace, clients: Clients, fallback: Fallback
    ) -> int:
        assert self.config is not None
        path = self.fallback_path
        custodians = await build(self.config, clients)
        failures = await restore(fallback.shares, custodians=custodians, replace=args.replace)
        lines = [f"From {path}:"]
        for name, numbers in fallback.numbers.items():
            what = f"unseal key(s) {', '.join(str(n) for n in numbers)}"
            outcome = f"NOT STORED ({failures[name]})" if name in failures else "stored"
            lines.append(f"  {name}: {what}: {outcome}")
        for name, token in fallback.root_tokens.items():
            try:
                store = await open_store(self.config.custodian(name), clients)
                stored = await store_with_retries(store, token, replace=args.replace)
            except CustodyError as exc:
                failures[name] = str(exc)
                lines.append(f"  {name}: root token: NOT STORED ({exc})")
            else:
                held = "stored" if stored else "already held"
                lines.append(f"  {name}: root token: {held} ({store.describe()})")
        print("\n".join(lines))
        if failures:
            raise CommandError(
                f"custodians {', '.join(sorted(failures))} could not store their entries "
                f"({'; '.join(failures.values())}). Nothing was lost: {path} still holds them; "
                "run this again once the custodian works (the others are left as they are)"
            )
        print(f"Every entry of {path} is at its custodian. Delete the file now "
              f"(shred -u {path}), then check with `unsealer custody verify`.")
        return OK

    async def _root_token(self, output: InitOutput, clients: Clients) -> Placed:
        token = output.root_token
        custodian = self.token_custodian
        if token is None:
            if self.token_file is not None:
                self.token_file.abandon()
                print(f"note: the input holds no root token; {self.token_file.path} was not "
                      "created", file=sys.stderr)
            if custodian is not None:
                print(f"note: the input holds no root token; nothing was stored at custodian "
                      f"{custodian.name!r}", file=sys.stderr)
            return Placed()
        if custodian is not None:
            store = await open_store(custodian, clients)
            return await place_root_token(
                token, store=store, token_file=self.token_file, fallback_dir=self.fallback_dir,
                replace=self.args.replace, rescue=False,
            )
        if self.token_file is not None:
            self.token_file.write(token.reveal())
            return Placed(note=f"Root token written to {self.token_file.path} (mode 0600)")
        if self.args.print_root_token:
            print(f"Initial Root Token: {token.reveal()}")
            return Placed()
        print("note: the root token in the input was not kept (--root-token-custodian, "
              "--root-token-file or --print-root-token keep it); revoke it once you no longer "
              "need it", file=sys.stderr)
        return Placed()

    def close(self) -> None:
        if self.output is not None:
            self.output.wipe()
        if self.fallback is not None:
            self.fallback.wipe()
        if self.token_file is not None:
            self.token_file.abandon()
