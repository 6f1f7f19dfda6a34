"""`HfArgumentParser` for the job dataclasses, plus what the jobs need from a command line: positional fields,
`--set FIELD=VALUE` into dict fields, and one-line errors with exit code 2 (1 for a job that fails on its
input), never a traceback for a user's mistake."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

from transformers import HfArgumentParser

from .._optional import MissingExtraError
from .logs import configure_logging

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
T = TypeVar("T")


def field_value(text: str) -> tuple[str, Any]:
    """FIELD=VALUE with VALUE read as JSON when it is JSON (numbers, booleans, lists), else kept a string."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE, got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


class JobArgumentParser(HfArgumentParser):
    """One job dataclass -> flags. Beyond `HfArgumentParser`: `positional=True` fields (with `nargs`), dict fields
    as repeatable FIELD=VALUE options, and errors as one line on stderr with exit code 2."""

    @staticmethod
    def _parse_dataclass_field(parser, field: dataclasses.Field) -> None:
        metadata = dict(field.metadata)
        if metadata.pop("positional", False):
            default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
            kwargs = {k: v for k, v in metadata.items() if k in ("help", "nargs", "metavar", "choices")}
            if "nargs" not in kwargs and default is not None:
                kwargs["nargs"] = "?"
            parser.add_argument(field.name, default=default, **kwargs)
            return
        if getattr(field.type, "__origin__", field.type) is dict:
            aliases = metadata.pop("aliases", [])
            parser.add_argument(
                *aliases,
                f"--{field.name.replace('_', '-')}",
                f"--{field.name}",
                dest=field.name,
                action="append",
                type=field_value,
                default=[],
                metavar="FIELD=VALUE",
                **metadata,
            )
            return
        before = len(parser._actions)
        HfArgumentParser._parse_dataclass_field(parser, field)
        for action in parser._actions[before:]:  # --output-dir before --output_dir in usage and help
            action.option_strings.sort(key=lambda option: "_" in option)

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def parse(dataclass_type: type[T], argv: Sequence[str], command: str, description: str) -> T:
    """The job's arguments from `argv`; a bad flag or value exits with a one-line message and code 2."""
    parser = JobArgumentParser(dataclass_type, prog=f"moleblend {command}", description=description)
    try:
        (arguments,) = parser.parse_args_into_dataclasses(args=list(argv), look_for_args_file=False)
    except ValueError as error:  # the dataclass refused a value (__post_init__) or an unknown argument
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        parser.error(
            message.replace("Some specified arguments are not used by the HfArgumentParser:", "unrecognized arguments:")
        )
    configure_logging(arguments.log_level)
    return arguments


def run(job: Callable[[], int], command: str) -> int:
    """Run a job; a failure on the user's input (missing file, used directory, bad data, an unreachable source) is
    one line, code 1."""
    from ..processing import MoleculeError

    try:
        return job()
    except (
        FileNotFoundError,
        FileExistsError,
        NotADirectoryError,
        IsADirectoryError,
        ConnectionError,
        ValueError,
        MoleculeError,
        MissingExtraError,
    ) as error:
        print(f"moleblend {command}: error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as error:  # a full disk, a read-only directory: the system's reason, on one line
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"moleblend {command}: error: {reason}", file=sys.stderr)
        return EXIT_FAILED
