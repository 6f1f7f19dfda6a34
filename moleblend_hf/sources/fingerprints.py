"""Fingerprints of local source files, so that a resumed run can tell that its data changed under it.

A checkpoint records, for every local file the run reads, its size, modification time and a BLAKE2b hash of its
bytes (read in chunks). A stream position (shard, row) means nothing in a file that was edited, reordered or
replaced: `--resume` compares the fingerprints and names the file and what changed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

_CHUNK = 1 << 20


def fingerprint_file(path: str | Path) -> dict[str, int | str]:
    """Size (bytes), modification time (ns) and BLAKE2b-256 of the content of one file."""
    path = Path(path)
    digest = hashlib.blake2b(digest_size=32)
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "blake2b": digest.hexdigest()}


def fingerprint_sources(sources: Iterable[str | Path]) -> dict[str, dict[str, int | str]]:
    """The fingerprints of the local files among `sources` (every file of a local dataset directory); Hub datasets
    and URLs are left out (a Hub source is pinned to a revision)."""
    files: list[Path] = []
    for source in map(Path, map(str, sources)):
        files += (
            sorted(p for p in source.rglob("*") if p.is_file())
            if source.is_dir()
            else [source]
            if source.is_file()
            else []
        )
    return {str(path): fingerprint_file(path) for path in files}


def _time(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, timezone.utc).isoformat(timespec="seconds")


def source_changes(recorded: dict[str, dict], now: dict[str, dict]) -> list[str]:
    """One sentence per recorded source whose content changed (or that is gone); a file whose modification time
    alone changed (touched, copied) holds the same data and is not a change."""
    changes = []
    for source, before in recorded.items():
        after = now.get(source)
        if after is None:
            changes.append(f"{source} is gone")
            continue
        if before["size"] == after["size"] and before["blake2b"] == after["blake2b"]:
            continue
        what = []
        if before["size"] != after["size"]:
            what.append(f"size {before['size']} -> {after['size']} bytes")
        if before["mtime_ns"] != after["mtime_ns"]:
            what.append(f"modified {_time(before['mtime_ns'])} -> {_time(after['mtime_ns'])}")
        what.append("content hash differs")
        changes.append(f"{source} changed ({', '.join(what)})")
    return changes
