"""Publishing MoleBLEND models to the Hugging Face Hub (the model card: card.py).

`push_to_hub` uploads a saved model directory (or a model object) as one commit: the weights and `config.json`,
the processor's `preprocessor_config.json`, the remote code that `save_pretrained` writes (so that
`trust_remote_code=True` works without this package), and a model card (`README.md`). Pushing to an existing
repo updates it: the new commit replaces the files and, by default, removes files the directory no longer has.

Failures (network errors, a rejected token, Hub server errors) raise `HubPushError`; the local directory is
never modified by a push (a card that the directory lacks is generated in memory and uploaded).
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

from ..modeling import MoleBlendConfig
from ..processing import MoleBlendProcessor
from .card import CARD_FILE, PROCESSOR_FILE, card_for_directory

# the model card's names, importable from here as before the card moved to card.py (`X as X`: a re-export)
from .card import DEFAULT_TAGS as DEFAULT_TAGS
from .card import METRICS_FILE as METRICS_FILE
from .card import build_model_card as build_model_card
from .card import count_parameters as count_parameters
from .card import directory_metrics as directory_metrics
from .card import load_metrics as load_metrics
from .card import write_model_card as write_model_card
from .remote_code import needed_modules, remote_code_files

logger = logging.getLogger(__name__)

PIPELINES_FILE = "pipelines.py"
DEFAULT_COMMIT_MESSAGE = "Upload MoleBLEND model"
# Always kept on the Hub even when the directory has no such file (it routes binaries to LFS/Xet).
_KEEP_REMOTE = {".gitattributes"}


class HubPushError(RuntimeError):
    """A push to the Hub failed. `repo_id`, `status` (HTTP status, None for network errors) and `cause` say why.

    The local directory is unchanged; fix the cause and push again (a failed push commits nothing).
    """

    def __init__(self, repo_id: str, cause: str, status: int | None = None, directory: str | Path | None = None):
        self.repo_id, self.cause, self.status = repo_id, cause, status
        where = f"; the local files in {directory} are unchanged" if directory is not None else ""
        super().__init__(f"Pushing to the Hub repo '{repo_id}' failed: {cause}{where}.")


@dataclass
class PushResult:
    """What a successful push created."""

    repo_id: str  # with its namespace, as the Hub resolved it
    repo_url: str
    commit_url: str
    commit_sha: str
    files: list[str] = field(default_factory=list)  # paths uploaded in the commit
    deleted: list[str] = field(default_factory=list)  # stale paths removed from the repo


# ------------------------------------------------------------------------------------------------- pushing
#: the files of a model repo besides its code: weights, config, processor, card. A run directory also holds
#: checkpoints, logs, splits, metrics and predictions of the user's data, and may hold any file of the user's:
#: only these names (and the remote code generated from the package) are ever uploaded.
_MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "model-*-of-*.safetensors",
    "model.safetensors.index.json",
    PROCESSOR_FILE,
    "processor_config.json",
    CARD_FILE,
)


def _local_files(directory: Path) -> dict[str, Path]:
    """path in repo -> local file, for the model files of the directory, by name (top level only; never a symlink,
    whose target may be any file the user can read). A user's other files (`my_keys.py`, notes, data, metrics)
    are never uploaded; the remote code is generated from the package (`remote_code.py`), never read from here."""
    files = {}
    for path in sorted(directory.iterdir()):
        if (
            not any(fnmatch.fnmatch(path.name, pattern) for pattern in _MODEL_FILES)
            or not path.is_file()
            and not path.is_symlink()
        ):
            continue
        if path.is_symlink():
            logger.warning("not uploading %s: a symbolic link", path)
            continue
        files[path.name] = path
    return files


def _check_model_directory(directory: Path) -> MoleBlendConfig:
    """The config of a saved MoleBLEND model directory; errors before any upload when it is not one."""
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a directory (expected a save_pretrained output)")
    if not (directory / "config.json").exists():
        raise FileNotFoundError(f"{directory} has no config.json: save the model with save_pretrained first")
    if not any(
        (directory / name).exists()
        for name in (
            "model.safetensors",
            "model.safetensors.index.json",
            "pytorch_model.bin",
            "pytorch_model.bin.index.json",
        )
    ):
        raise FileNotFoundError(f"{directory} has no model weights (model.safetensors)")
    model_type = json.loads((directory / "config.json").read_text()).get("model_type")
    if model_type != MoleBlendConfig.model_type:
        raise ValueError(f"{directory} holds a {model_type!r} model, not MoleBLEND")
    return MoleBlendConfig.from_pretrained(directory)


def _processor_files(processor: Any) -> dict[str, bytes]:
    """The files `processor.save_pretrained` writes (config + its remote code), read into memory."""
    with tempfile.TemporaryDirectory() as tmp:
        processor.save_pretrained(tmp)
        return {path: file.read_bytes() for path, file in _local_files(Path(tmp)).items()}


def _default_processor(config: MoleBlendConfig) -> Any:
    return MoleBlendProcessor.from_config(config)


def _client_errors() -> tuple[type[BaseException], ...]:
    """Transport errors of the HTTP client under huggingface_hub (httpx2 in 2.x, httpx in 1.x)."""
    errors: list[type[BaseException]] = []
    for module in ("httpx2", "httpx"):
        try:
            errors.append(__import__(module).HTTPError)
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def _explain(error: BaseException, endpoint: str) -> tuple[str, int | None]:
    """(a sentence naming the cause, HTTP status or None) for an exception raised while talking to the Hub."""
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    detail = getattr(error, "server_message", None) or ""
    detail = f" (server said: {detail.strip()})" if detail.strip() else ""
    if status == 401:
        return (
            "authentication failed (HTTP 401): the Hub rejected the token or none was given; run "
            f"`hf auth login` or set HF_TOKEN to a token with write access{detail}"
        ), status
    if status == 403:
        return f"permission denied (HTTP 403): the token may not write to this repo or namespace{detail}", status
    if status == 404:
        return f"not found (HTTP 404): the repo or revision does not exist{detail}", status
    if status in (409, 412):
        return f"conflict (HTTP {status}): the repo changed during the push; push again{detail}", status
    if isinstance(status, int) and status >= 500:
        return (
            f"the Hub answered with a server error (HTTP {status}) and did not confirm the commit; push "
            f"again later (a push of unchanged files makes no new commit){detail}"
        ), status
    if isinstance(status, int):
        return f"the Hub refused the request (HTTP {status}){detail}: {error}", status
    if isinstance(error, ValueError):
        return f"the Hub rejected the upload: {error}", None
    if isinstance(error, _client_errors()):
        return f"network error while contacting {endpoint}: {type(error).__name__}: {error}", None
    return f"{type(error).__name__} while talking to {endpoint}: {error}", None


def push_to_hub(
    model_or_directory: Any,
    repo_id: str,
    *,
    processor: Any = None,
    private: bool = False,
    commit_message: str = DEFAULT_COMMIT_MESSAGE,
    token: str | None = None,
    endpoint: str | None = None,
    delete_stale_files: bool = True,
    force: bool = False,
    retries: int = 3,
    **card_options: Any,
) -> PushResult:
    """Push a MoleBLEND model, its processor and a model card to the Hub repo `repo_id`, in one commit.

    Args:
        model_or_directory: A `save_pretrained` directory, or a `MoleBlendModel` / `MoleBlendForPreTraining`
            (saved to a temporary directory first).
        repo_id: `namespace/name` (created if missing; an existing repo gets a new commit).
        processor: A `MoleBlendProcessor` to upload. Default: the directory's `preprocessor_config.json`, or,
            when it has none, a default processor matching the config (`max_atoms`, `max_path_hops`).
        private: Visibility of a repo this call creates (an existing repo keeps its visibility).
        commit_message: Title of the commit.
        token, endpoint: Hub token and URL; default: the logged-in token / `HF_TOKEN`, and `HF_ENDPOINT`.
        delete_stale_files: Remove files of the repo that the directory no longer has (e.g. old weight shards),
            so that the repo mirrors the directory. `.gitattributes` is always kept.
        force: Push into an existing repo whose `config.json` is not a MoleBLEND config (its files are replaced).
            Without it such a push is refused before anything is uploaded.
        retries: Further attempts, with exponential backoff (1 s, 2 s, 4 s, ...), after a Hub server error (5xx)
            or a network error.
        **card_options: Used only when the directory has no `README.md`: options of `build_model_card`
            (`pretraining`, `datasets`, `base_model`, `license`, `tags`, `metrics`); `metrics.json` in the
            directory is read by default. An existing `README.md` is uploaded as is.

    Returns:
        A `PushResult` (repo id and URL, commit URL and sha, uploaded and deleted paths).

    Raises:
        HubPushError: the Hub could not be reached, refused the token (401/403), failed (5xx) after `retries`
            further attempts, or the repo holds another kind of model (without `force`). Nothing is
            changed locally; a failed commit changes nothing on the Hub (a repo this call created may remain,
            with only its initial commit).
        FileNotFoundError / ValueError: the directory is not a saved MoleBLEND model (checked before any upload).
    """
    if isinstance(model_or_directory, (str, os.PathLike)):
        return _push_directory(
            Path(model_or_directory),
            repo_id,
            processor,
            private,
            commit_message,
            token,
            endpoint,
            delete_stale_files,
            force,
            retries,
            card_options,
        )
    if processor is None:
        logger.warning("no processor given: uploading a default MoleBlendProcessor with the model")
        processor = _default_processor(model_or_directory.config)
    with tempfile.TemporaryDirectory(prefix="moleblend-push-") as tmp:
        model_or_directory.save_pretrained(tmp)
        return _push_directory(
            Path(tmp),
            repo_id,
            processor,
            private,
            commit_message,
            token,
            endpoint,
            delete_stale_files,
            force,
            retries,
            card_options,
            local=False,
        )


def _pipeline_files(directory: Path, config: MoleBlendConfig) -> dict[str, bytes]:
    """`pipelines.py` and a `config.json` whose `custom_pipelines` names its tasks, so that
    `pipeline(task, model=repo_id, trust_remote_code=True)` works without this package."""
    from ..inference import pipelines

    content = json.loads((directory / "config.json").read_text())
    content["custom_pipelines"] = pipelines.custom_pipelines(config.architectures)
    return {
        PIPELINES_FILE: Path(pipelines.__file__).read_bytes(),
        "config.json": (json.dumps(content, indent=2, sort_keys=True) + "\n").encode(),
    }


def _transient(error: BaseException) -> bool:
    """A failure worth retrying: a Hub server error (5xx) or a network error."""
    status = getattr(getattr(error, "response", None), "status_code", None)
    return (isinstance(status, int) and status >= 500) or (status is None and isinstance(error, _client_errors()))


def _with_retries(call: Any, retries: int) -> Any:
    for attempt in range(retries + 1):
        try:
            return call()
        except (OSError, *_client_errors()) as error:
            if attempt == retries or not _transient(error):
                raise
            delay = 2**attempt
            logger.warning(
                "the Hub failed (%s); retrying in %d s (%d/%d)", type(error).__name__, delay, attempt + 1, retries
            )
            time.sleep(delay)


def _check_remote_is_moleblend(api: HfApi, repo_id: str, remote_files: set[str]) -> None:
    """Refuse to replace or delete the files of a repo that we did not make: one without a MoleBLEND
    `config.json` (another kind of model, or files of any kind) that holds more than the Hub's `.gitattributes`."""
    theirs = sorted(remote_files - _KEEP_REMOTE)
    if not theirs:
        return  # a new, empty repo
    if "config.json" not in remote_files:
        raise HubPushError(
            repo_id,
            f"the repo holds files that are not a MoleBLEND model ({', '.join(theirs[:3])}"
            f"{', ...' if len(theirs) > 3 else ''}) and no config.json: pushing would replace "
            "or delete them; pass --force (force=True) if that is what you want, or choose "
            "another repo",
        )
    remote_type = (getattr(api.model_info(repo_id), "config", None) or {}).get("model_type")
    if remote_type is None:  # the Hub reads no model type from it: not JSON, or a config of no model
        raise HubPushError(
            repo_id,
            "the repo's config.json is not a model config the Hub can read (not JSON, or no "
            "model_type): pushing would replace its files; pass --force (force=True) if that "
            "is what you want, or choose another repo",
        )
    if remote_type != MoleBlendConfig.model_type:
        raise HubPushError(
            repo_id,
            f"the repo holds a {remote_type!r} model, not MoleBLEND: pushing would replace "
            "its files; pass --force (force=True) if that is what you want, or choose "
            "another repo",
        )


def _push_directory(
    directory: Path,
    repo_id: str,
    processor: Any,
    private: bool,
    commit_message: str,
    token: str | None,
    endpoint: str | None,
    delete_stale_files: bool,
    force: bool,
    retries: int,
    card_options: dict[str, Any],
    local: bool = True,
) -> PushResult:
    """`push_to_hub` for a directory; `local=False`: a temporary directory, not named in errors."""
    config = _check_model_directory(directory)
    files: dict[str, Path | bytes] = dict(_local_files(directory))
    if processor is not None or PROCESSOR_FILE not in files:
        if processor is None:
            logger.warning("%s has no %s: uploading a default MoleBlendProcessor", directory, PROCESSOR_FILE)
        files.update(_processor_files(processor or _default_processor(config)))
    if CARD_FILE in files and card_options:
        logger.info("%s has a README.md: uploading it as is (card options ignored)", directory)
    if CARD_FILE not in files:
        processor_config = json.loads(_read(files[PROCESSOR_FILE]))
        card = card_for_directory(directory, config, repo_id=repo_id, processor_config=processor_config, **card_options)
        files[CARD_FILE] = str(card).encode()
    files.update(_pipeline_files(directory, config))
    # the code is generated from the installed package (with a do-not-edit header), never taken from the directory:
    # a stale copy would publish the behaviour of its time, and a user's own .py files are not ours to publish
    code = remote_code_files([*needed_modules(directory), "processing_moleblend", "pipelines"])
    files = {name: content for name, content in files.items() if not name.endswith(".py")} | code

    # built (and hashed) before any request, so that a local read error is not reported as a Hub failure
    operations: list[Any] = [
        CommitOperationAdd(path_in_repo=path, path_or_fileobj=_source(content))
        for path, content in sorted(files.items())
    ]
    api = HfApi(endpoint=endpoint, token=token)
    try:
        resolved = _with_retries(lambda: api.create_repo(repo_id, private=private, exist_ok=True), retries)
        target = getattr(resolved, "repo_id", None) or repo_id
        remote_files = set(_with_retries(lambda: api.list_repo_files(target), retries))
        if not force:
            _with_retries(lambda: _check_remote_is_moleblend(api, target, remote_files), retries)
        deleted = []
        if delete_stale_files:
            deleted = sorted(remote_files - set(files) - _KEEP_REMOTE)
            operations += [CommitOperationDelete(path_in_repo=path) for path in deleted]
        info = _with_retries(lambda: api.create_commit(target, operations, commit_message=commit_message), retries)
    except (OSError, ValueError, *_client_errors()) as error:  # HfHubHTTPError is an OSError
        cause, status = _explain(error, api.endpoint)
        raise HubPushError(repo_id, cause, status, directory if local else None) from error
    return PushResult(
        repo_id=target,
        repo_url=str(resolved),
        commit_url=info.commit_url,
        commit_sha=info.oid,
        files=sorted(files),
        deleted=deleted,
    )


def _read(content: Path | bytes) -> bytes:
    return content.read_bytes() if isinstance(content, Path) else content


def _source(content: Path | bytes) -> str | bytes:
    """What CommitOperationAdd reads: a file path (streamed, never loaded whole) or bytes made in memory."""
    return str(content) if isinstance(content, Path) else content


def push_directory(
    directory: str | Path, repo_id: str, private: bool = False, commit_message: str = DEFAULT_COMMIT_MESSAGE
) -> str:
    """Upload a saved model directory (model, processor, card, remote code); returns the commit URL.

    Kept for callers of the first version of this module; `push_to_hub` is the full interface.
    """
    return push_to_hub(directory, repo_id, private=private, commit_message=commit_message).commit_url
