"""The ``edgedeploy`` command: a thin layer over the library.

Each sub-command lives in its own module with a ``register(subparsers)`` function that adds
its parser and sets ``func(args) -> int``. The list of commands is explicit (``COMMANDS``);
nothing is discovered at import time. Only :func:`main` maps errors to exit codes:
:class:`~toolchain.errors.EdgeDeployError` → its ``exit_code`` (message on stderr),
Ctrl-C → 130, anything else → 70 with a traceback under ``--debug``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from toolchain import __version__
from toolchain.cli import ui
from toolchain.errors import EdgeDeployError

#: Sub-command modules, in the order ``--help`` lists them.
COMMANDS: tuple[str, ...] = (
    "toolchain.cli.convert",
    "toolchain.cli.prune",
    "toolchain.cli.inspect",
    "toolchain.cli.emit",
    "toolchain.cli.compile",
    "toolchain.cli.firmware",
    "toolchain.cli.targets",
    "toolchain.cli.devices",
    "toolchain.cli.bench",
    "toolchain.cli.run",
    "toolchain.cli.init",
    "toolchain.cli.demo",
    "toolchain.cli.zoo",
    "toolchain.cli.sweep",
)

EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgedeploy",
        description="PyTorch → pruned int8 TFLite → TFLite Micro firmware → on-device numbers.",
    )
    parser.add_argument("--version", action="version", version=f"edgedeploy {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    ui.configure(verbose=args.verbose, quiet=args.quiet)
    log = logging.getLogger("toolchain")
    try:
        return int(args.func(args) or 0)
    except EdgeDeployError as exc:
        ui.error(exc)
        if args.debug:
            log.exception("details")
        return exc.exit_code
    except KeyboardInterrupt:
        ui.console_err.print("[yellow]interrupted[/]: stopped; no half-written artifacts were left")
        return EXIT_INTERRUPTED
    except SystemExit as exc:  # user code (a model factory, a data function) called sys.exit()
        ui.error(
            EdgeDeployError(
                f"{args.command}: code it ran called sys.exit({exc.code!r}); stopped, "
                "nothing was produced",
                hint="model factories and data functions must return (or raise), not exit",
            )
        )
        return 1
    except Exception as exc:  # last-resort handler: report, never hide
        if args.debug:
            raise
        if isinstance(exc, OSError) and exc.filename is not None:  # a path the user named
            ui.error(path_error(exc))
            return 1
        ui.console_err.print_exception(max_frames=5)
        ui.console_err.print(
            "[red]internal error[/]: this is a bug in edgedeploy; please report it with --debug"
        )
        return EXIT_INTERNAL


def path_error(exc: OSError) -> EdgeDeployError:
    """An ``OSError`` about a path given on the command line (a name too long, a folder
    where a file is expected, no permission) as one clear error."""
    name = os.fsdecode(exc.filename)
    if len(name) > 100:
        name = f"{name[:50]}...{name[-30:]} ({len(name)} characters)"
    return EdgeDeployError(
        f"{name}: {exc.strerror or exc}",
        hint="check the path: names longer than 255 bytes, a folder where a file is "
        "expected (or the reverse) and missing permissions cannot be used",
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
