"""The program each training process runs under torchrun: ``python -m misstep.training.worker JOB.json``.

Each process builds its own plugin registry (the installed plugins) to build the job's loss.
"""

from __future__ import annotations

import os
import sys

from misstep.errors import MisstepError
from misstep.jsonl import read_text
from misstep.plugins import Plugins
from misstep.recipe import LossRef
from misstep.training.engine import Job, train

ERROR_PREFIX = "misstep: error: "


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m misstep.training.worker JOB.json", file=sys.stderr)
        return 2
    try:
        job = Job.model_validate_json(read_text(args[0]))
        train(job, LossRef.model_validate(job.loss).resolve(Plugins()).build(), log=_log)
    except MisstepError as error:
        print(ERROR_PREFIX + str(error), file=sys.stderr, flush=True)
        return 1
    finally:
        _leave_process_group()
    return 0


def _log(message: str) -> None:
    """Print a line of the run's log once (from the main rank)."""
    if os.environ.get("RANK", "0") == "0":
        print(f"[train] {message}", file=sys.stderr, flush=True)


def _leave_process_group() -> None:
    """Shut the process group down before exit: left to the interpreter, the backend's threads can be
    torn down while still running, and the process aborts ("terminate called without an active exception")."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
