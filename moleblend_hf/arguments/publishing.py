"""The arguments of `moleblend push` and `moleblend convert`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .common import JobArguments, _non_negative, _overrides, option


@dataclass
class PushArguments(JobArguments):
    """`moleblend push DIR REPO_ID`."""

    directory: str = option(None, "a directory written by save_pretrained", positional=True, metavar="DIR")
    repo_id: str = option(None, "namespace/name of the Hub model repo", positional=True, metavar="REPO_ID")
    private: bool = option(False, "create the repo as private (if it is created)")
    commit_message: str | None = option(None, "commit title (default: 'Upload MoleBLEND model')")
    force: bool = option(False, "push into an existing repo that holds another kind of model (replaces its files)")
    retries: int = option(3, "further attempts after a Hub server (5xx) or network error, with backoff")

    def __post_init__(self) -> None:
        _non_negative(self, "retries")


@dataclass
class ConvertArguments(JobArguments):
    """`moleblend convert CHECKPOINT OUTPUT_DIR`."""

    checkpoint: str = option(None, "official .pt checkpoint", positional=True, metavar="CHECKPOINT")
    output_dir: str = option(None, "directory to write (save_pretrained layout)", positional=True, metavar="OUTPUT_DIR")
    config_overrides: dict[str, Any] = option(
        {},
        "override a MoleBlendConfig field derived from the checkpoint args (JSON value), repeatable",
        aliases=["--set"],
    )

    def __post_init__(self) -> None:
        self.config_overrides = _overrides(self.config_overrides)
