"""Run directories with an identity: a job never mixes its output with a previous run's without being told to.

Every job that writes a directory (`pretrain`, `finetune`, `embed`) starts with `open_run`: an empty or new
directory gets a fresh `run.json` (run id, job, start time, settings); a directory holding a previous run is
refused unless the user passes `--resume` (continue that run: same job, settings compared) or `--overwrite`
(remove that run's files first; only a directory that `run.json` marks as one of our runs is ever emptied).
"""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)
RUN_FILE = "run.json"


@dataclass
class Run:
    """The identity of a run directory, stored in `<dir>/run.json`."""

    run_id: str
    job: str
    started: str
    settings: dict[str, Any]
    resumed: list[dict[str, Any]] = field(default_factory=list)  # each --resume: when, and changed settings

    def save(self, directory: Path, run_file: str = RUN_FILE) -> None:
        temporary = directory / f".{run_file}.tmp"
        temporary.write_text(json.dumps(asdict(self), indent=2, default=str))
        temporary.replace(directory / run_file)


def _jsonable(settings: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(settings, default=str))


def read_run(directory: str | Path, run_file: str = RUN_FILE) -> Run | None:
    path = Path(directory) / run_file
    if not path.exists():
        return None
    return Run(**json.loads(path.read_text()))


def open_run(directory: str | Path, job: str, settings: dict[str, Any], *, resume: bool = False,
             overwrite: bool = False, compared: tuple[str, ...] | None = None, allow_changes: bool = False,
             run_file: str = RUN_FILE, record_resume: bool = True) -> Run:
    """Claim `directory` for a run of `job`.

    `compared`: the settings that must not change on `--resume` (all settings when None); a change is an error
    naming each setting with its old and new value, unless `allow_changes` (then it is logged and recorded in
    `run.json`). Raises `FileExistsError` for a used directory without `resume` / `overwrite`. `run_file`: another
    name for `run.json` (embed outputs use `_run.json`, which parquet readers skip). `record_resume=False`: a
    resume is not written to `run.json` yet (the caller saves the returned run once it has accepted the checkpoint,
    so a refused resume leaves the run as it was).
    """
    directory = Path(directory)
    settings = _jsonable(settings)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"{directory} is a file; --output-dir needs a directory")
    used = directory.exists() and any(directory.iterdir())
    previous = read_run(directory, run_file) if used else None
    if resume:
        if previous is None:
            raise FileNotFoundError(f"--resume: {directory} holds no run to continue (no {run_file})")
        if previous.job != job:
            raise ValueError(f"--resume: {directory} holds a `{previous.job}` run, not a `{job}` run")
        changed = {k: {"run": previous.settings.get(k), "now": v} for k, v in settings.items()
                   if (compared is None or k in compared) and previous.settings.get(k) != v}
        if changed and not allow_changes:
            listed = "; ".join(f"{k}: {c['run']!r} -> {c['now']!r}" for k, c in changed.items())
            raise ValueError(f"--resume: settings differ from the run in {directory}: {listed}. Resume with the "
                             "run's settings, or pass --allow-changed-settings to apply the new ones from here on")
        if changed:
            logger.warning("resuming %s with changed settings: %s", directory, changed)
        previous.resumed.append({"at": _now(), "changed": changed})
        previous.settings = {**previous.settings, **settings}
        if record_resume:
            previous.save(directory, run_file)
        return previous
    if used:
        if not overwrite:
            what = f"run {previous.run_id} ({previous.job}, started {previous.started})" if previous else \
                "files that are not from a moleblend run"
            raise FileExistsError(f"{directory} is not empty: it holds {what}. Pass --resume to continue it, "
                                  "--overwrite to replace it, or choose another --output-dir")
        if previous is None:
            raise FileExistsError(f"{directory} is not empty and holds no moleblend run ({run_file}); --overwrite "
                                  "only replaces a previous run's directory. Choose another --output-dir")
        logger.warning("--overwrite: removing run %s from %s", previous.run_id, directory)
        for entry in directory.iterdir():
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    directory.mkdir(parents=True, exist_ok=True)
    run = Run(run_id=uuid.uuid4().hex, job=job, started=_now(), settings=settings)
    run.save(directory, run_file)
    return run


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
