"""`moleblend push`."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from ..arguments import PushArguments
from .parser import EXIT_FAILED, EXIT_OK, parse, run

DESCRIPTION = (
    "Upload a save_pretrained directory to a Hub model repo in one commit: weights, config, processor, remote code "
    "(loadable with trust_remote_code=True, pipelines included) and a model card (README.md; generated when the "
    "directory has none, with a model-index from metrics.json if present). Authenticates with HF_TOKEN or "
    "`hf auth login`; HF_ENDPOINT selects another Hub."
)


def main(argv: Sequence[str]) -> int:
    arguments = parse(PushArguments, argv, "push", DESCRIPTION)

    def job() -> int:
        from ..publishing.push import DEFAULT_COMMIT_MESSAGE, HubPushError, push_to_hub

        try:
            result = push_to_hub(
                arguments.directory,
                arguments.repo_id,
                private=arguments.private,
                commit_message=arguments.commit_message or DEFAULT_COMMIT_MESSAGE,
                force=arguments.force,
                retries=arguments.retries,
            )
        except HubPushError as error:
            print(f"moleblend push: error: {error}", file=sys.stderr)
            return EXIT_FAILED
        print(
            json.dumps(
                {
                    "repo_id": result.repo_id,
                    "repo_url": result.repo_url,
                    "commit_url": result.commit_url,
                    "files": result.files,
                    "deleted": result.deleted,
                },
                indent=2,
            )
        )
        return EXIT_OK

    return run(job, "push")
