"""Run directories with an identity: a job never mixes its output with a previous run's without being told to.

Every job that writes a directory (`pretrain`, `finetune`, `embed`) starts with `open_run`, which takes the
directory's lock (one process per directory, `run_lock.py`) and then: an empty or new directory gets a fresh run;
a directory holding a previous run is refused unless the user passes `--resume` (continue that run: same job,
settings compared) or `--overwrite` (remove that run's files first).

A run directory is recognised by its marker, `.moleblend-run.json` (format and version, run id, job, whether the
run finished, and the manifest: every top-level file and directory the run wrote, recorded before it is written),
never by the shape of some JSON file. `--overwrite` removes exactly the manifest's entries, so a user's files in
the directory stay, and it refuses to remove an input of the command that asks for it. `run.json` (`_run.json` for
embed outputs) holds the run's settings for the user to read.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Self

from transformers import TrainerCallback

from .run_lock import LOCK_FILE, RunLock

logger = logging.getLogger(__name__)
RUN_FILE = "run.json"
MARKER_FILE = ".moleblend-run.json"
MARKER_FORMAT, MARKER_VERSION = "moleblend-run", 1


@dataclass
class Run:
    """The identity of a run directory, stored in `<dir>/run.json`."""

    run_id: str
    job: str
    started: str
    settings: dict[str, Any]
    resumed: list[dict[str, Any]] = field(default_factory=list)  # each --resume: when, and changed settings

    def save(self, directory: Path, run_file: str = RUN_FILE) -> None:
        _write_json(Path(directory) / run_file, asdict(self))


def _write_json(path: Path, content: Any) -> None:
    """Write atomically: a reader (or a crash) sees the old file or the new one, never half of one."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(content, indent=2, default=str))
    temporary.replace(path)


def read_marker(directory: str | Path) -> dict | None:
    """The run marker of `directory`, or None when it holds none (or something else under that name)."""
    try:
        marker = json.loads((Path(directory) / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return None
    if (
        not isinstance(marker, dict)
        or marker.get("format") != MARKER_FORMAT
        or not isinstance(marker.get("written"), list)
    ):
        return None
    if marker.get("version", 0) > MARKER_VERSION:
        raise ValueError(
            f"{directory} holds a run of a newer moleblend-hf (run format {marker['version']}); "
            "upgrade moleblend-hf to use it"
        )
    return marker


def read_run(directory: str | Path, run_file: str = RUN_FILE) -> Run | None:
    """The run in `directory`: None unless the directory holds a run marker (a `run.json` alone is not a run)."""
    marker = read_marker(directory)
    if marker is None:
        return None
    path = Path(directory) / marker.get("run_file", run_file)
    try:
        run = Run(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as error:
        raise ValueError(
            f"{path}: the run's record is damaged ({type(error).__name__}: {error}); pass "
            "--overwrite to replace the run, or choose another --output-dir"
        ) from None
    return run


class RunDirectory:
    """An open run directory: its run, its manifest and its lock. `record` adds entries to the manifest before
    they are written; `finish` marks the run finished (last); `close` releases the lock."""

    def __init__(self, path: Path, run: Run, run_file: str, marker: dict, lock: RunLock | None):
        self.path, self.run, self.run_file, self.marker, self.lock = path, run, run_file, marker, lock
        # what the directory held that this run did not write (the user's files): never claimed, never written over
        self.foreign = {entry.name for entry in path.iterdir()} - set(marker["written"]) - {LOCK_FILE}

    @property
    def written(self) -> set[str]:
        return set(self.marker["written"])

    def record(self, *names: str) -> None:
        """Add top-level names (files or directories this run is about to write) to the manifest."""
        clash = sorted(set(names) & self.foreign)
        if clash:
            raise FileExistsError(
                f"{self.path / clash[0]} is not from this run and the run would write over it; "
                "move it out of the directory or choose another --output-dir"
            )
        new = [name for name in names if name not in self.marker["written"]]
        if new:
            self.marker["written"] += new
            _write_json(self.path / MARKER_FILE, self.marker)

    def finish(self) -> None:
        """Mark the run finished; names recorded but never written leave the manifest."""
        self.marker["written"] = [
            name for name in self.marker["written"] if name == MARKER_FILE or os.path.lexists(self.path / name)
        ]
        self.marker["finished"] = True
        _write_json(self.path / MARKER_FILE, self.marker)

    def close(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class TrainerManifest(TrainerCallback):
    """Records the `Trainer`'s checkpoint directories in the run's manifest before the Trainer writes them (the
    flow callback has decided `should_save` by the time this one is called)."""

    def __init__(self, run: RunDirectory):
        self.run = run

    def _record(self, state, control) -> None:
        if control.should_save:
            self.run.record(f"checkpoint-{state.global_step}")

    def on_step_end(self, args, state, control, **kwargs) -> None:
        self._record(state, control)

    def on_epoch_end(self, args, state, control, **kwargs) -> None:
        self._record(state, control)


def _jsonable(settings: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(settings, default=str))


def open_run(
    directory: str | Path,
    job: str,
    settings: dict[str, Any],
    *,
    resume: bool = False,
    overwrite: bool = False,
    compared: tuple[str, ...] | None = None,
    allow_changes: bool = False,
    run_file: str = RUN_FILE,
    record_resume: bool = True,
    inputs: Iterable[str | Path | None] = (),
    resume_hint: str = "--resume to continue it, ",
) -> RunDirectory:
    """Claim `directory` for a run of `job`; returns the open `RunDirectory` (close it when the job ends).

    `compared`: the settings that must not change on `--resume` (all settings when None); a change is an error
    naming each setting with its old and new value, unless `allow_changes` (then it is logged and recorded in
    `run.json`). Raises `FileExistsError` for a used directory without `resume` / `overwrite`, `RunLockedError`
    when another process runs a job there. `run_file`: another name for `run.json` (embed outputs use `_run.json`,
    which parquet readers skip). `record_resume=False`: a resume is not written to `run.json` yet (the caller
    saves the run once it has accepted the checkpoint, so a refused resume leaves the run as it was). `inputs`: the
    paths the job reads; `--overwrite` refuses to remove any of them. `resume_hint`: how the refusal of a used
    directory offers to continue it (empty for jobs without `--resume`).
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"{directory} is a file; --output-dir needs a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        held = RunLock.acquire(directory)
    except PermissionError as error:
        raise PermissionError(f"cannot write to {directory}: {error.strerror}") from None
    try:
        return _claim(
            directory,
            job,
            _jsonable(settings),
            held,
            resume=resume,
            overwrite=overwrite,
            compared=compared,
            allow_changes=allow_changes,
            run_file=run_file,
            record_resume=record_resume,
            inputs=inputs,
            resume_hint=resume_hint,
        )
    except BaseException:
        held.release()
        raise


def _claim(
    directory: Path,
    job: str,
    settings: dict[str, Any],
    held: RunLock,
    *,
    resume: bool,
    overwrite: bool,
    compared: tuple[str, ...] | None,
    allow_changes: bool,
    run_file: str,
    record_resume: bool,
    inputs: Iterable[str | Path | None],
    resume_hint: str,
) -> RunDirectory:
    used = any(entry.name != LOCK_FILE for entry in directory.iterdir())
    marker = read_marker(directory) if used else None
    previous = read_run(directory, run_file) if marker is not None else None
    if resume:
        if previous is None:
            raise FileNotFoundError(f"--resume: {directory} holds no run to continue (no {MARKER_FILE})")
        if previous.job != job:
            raise ValueError(f"--resume: {directory} holds a `{previous.job}` run, not a `{job}` run")
        _compare_settings(directory, previous, settings, compared, allow_changes)
        if record_resume:
            previous.save(directory, marker.get("run_file", run_file))
        return RunDirectory(directory, previous, marker.get("run_file", run_file), marker, held)
    if used:
        if not overwrite:
            what = (
                f"run {previous.run_id} ({previous.job}, started {previous.started})"
                if previous
                else "files that are not from a moleblend run"
            )
            raise FileExistsError(
                f"{directory} is not empty: it holds {what}. Pass {resume_hint}--overwrite to "
                "replace it, or choose another --output-dir"
            )
        if previous is None:
            raise FileExistsError(
                f"{directory} is not empty and holds no moleblend run ({MARKER_FILE}); "
                "--overwrite only replaces a previous run's files. Choose another --output-dir"
            )
        remove_run_files(directory, marker, inputs)
        logger.warning("--overwrite: removed run %s from %s", previous.run_id, directory)
    run = Run(run_id=uuid.uuid4().hex, job=job, started=_now(), settings=settings)
    marker = {
        "format": MARKER_FORMAT,
        "version": MARKER_VERSION,
        "run_id": run.run_id,
        "job": job,
        "run_file": run_file,
        "finished": False,
        "written": [MARKER_FILE, run_file],
    }
    _write_json(directory / MARKER_FILE, marker)
    run.save(directory, run_file)
    return RunDirectory(directory, run, run_file, marker, held)


def _compare_settings(
    directory: Path, previous: Run, settings: dict[str, Any], compared: tuple[str, ...] | None, allow_changes: bool
) -> None:
    changed = {
        k: {"run": previous.settings.get(k), "now": v}
        for k, v in settings.items()
        if (compared is None or k in compared) and previous.settings.get(k) != v
    }
    if changed and not allow_changes:
        listed = "; ".join(f"{k}: {c['run']!r} -> {c['now']!r}" for k, c in changed.items())
        raise ValueError(
            f"--resume: settings differ from the run in {directory}: {listed}. Resume with the "
            "run's settings, or pass --allow-changed-settings to apply the new ones from here on"
        )
    if changed:
        logger.warning("resuming %s with changed settings: %s", directory, changed)
    previous.resumed.append({"at": _now(), "changed": changed})
    previous.settings = {**previous.settings, **settings}


def remove_run_files(directory: Path, marker: dict, inputs: Iterable[str | Path | None] = ()) -> None:
    """Remove what the run of `marker` wrote in `directory` (its manifest), the marker itself last; refuses
    (before removing anything) when an entry is, or holds, one of `inputs`."""
    entries = [
        directory / name
        for name in marker["written"]
        if name != MARKER_FILE and _inside(directory / name, directory) and os.path.lexists(directory / name)
    ]
    for given in inputs:
        if given is None or not os.path.exists(given):
            continue
        for entry in entries:
            if _contains(entry, Path(given)):
                raise ValueError(
                    f"--overwrite would remove {entry}, which holds {given}, an input of this "
                    "command; move the input out of the run directory or choose another --output-dir"
                )
    for entry in entries:
        if entry.is_dir() and not entry.is_symlink():
            nested = read_marker(entry)
            if nested is not None:  # an ensemble member: only what it wrote
                remove_run_files(entry, nested)
                if not any(entry.iterdir()):
                    entry.rmdir()
            else:
                shutil.rmtree(entry)
        else:
            entry.unlink()
    (directory / MARKER_FILE).unlink(missing_ok=True)


def _inside(entry: Path, directory: Path) -> bool:
    """A manifest name that stays in the directory (a damaged or hand-edited manifest cannot name `../x`)."""
    return entry.parent == directory and entry.name not in ("", ".", "..", LOCK_FILE)


def _contains(entry: Path, given: Path) -> bool:
    """Whether removing `entry` removes `given`: the same file (a hard link included) or a directory above it."""
    given = given.resolve()
    resolved = entry.resolve() if not entry.is_symlink() else entry.parent.resolve() / entry.name
    if resolved == given or resolved in given.parents:
        return True
    try:
        return entry.is_file() and not entry.is_symlink() and os.path.samefile(entry, given)
    except OSError:
        return False


def save_model_atomically(run: RunDirectory | None, directory: Path, write: Callable[[Path], None]) -> list[str]:
    """The final save as a whole: `write(temporary)` writes model, processor and card into a temporary directory
    inside `directory`; only when it completed are the files moved to the root, `config.json` last (a directory
    without it is no model). A failure removes the temporary directory and leaves the root as it was. Refuses to
    replace a file that this run did not write. Returns the names moved into place."""
    temporary = directory / ".tmp-final"
    if run is not None:
        run.record(temporary.name)
    if temporary.exists():
        shutil.rmtree(temporary)  # left by a save that was killed
    try:
        temporary.mkdir()
        write(temporary)
        names = sorted((p.name for p in temporary.iterdir()), key=lambda name: (name == "config.json", name))
        foreign = [
            name for name in names if os.path.lexists(directory / name) and (run is None or name not in run.written)
        ]
        if run is not None and foreign:
            raise FileExistsError(
                f"{directory / foreign[0]} was not written by this run; the final model was not "
                "saved over it. Move that file away and resume, or choose another --output-dir"
            )
        if run is not None:
            run.record(*names)
    except BaseException as error:
        shutil.rmtree(temporary, ignore_errors=True)
        if isinstance(error, OSError) and not isinstance(error, FileExistsError):
            raise OSError(f"could not save the final model in {directory}: {_reason(error)}") from None
        raise
    for name in names:
        target = directory / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(temporary / name, target)
    temporary.rmdir()
    return names


def _reason(error: OSError) -> str:
    """The system's reason for a failed write, on one line (a SafetensorError wraps it in a Rust debug string)."""
    return error.strerror or (str(error).strip().splitlines() or [type(error).__name__])[0]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
