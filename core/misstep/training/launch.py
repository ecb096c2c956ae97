"""Running a job in several processes with torchrun, its output shown and kept in ``workers.log``."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from misstep.errors import MisstepError
from misstep.jsonl import read_json
from misstep.models import cache_dir
from misstep.training.engine import RESULT, Job
from misstep.training.worker import ERROR_PREFIX

LOG = "workers.log"


def launch(job: Job, folder: Path, processes: int, *, quiet: bool = False) -> dict[str, Any]:
    """Run ``job`` on ``processes`` ranks (``torchrun --standalone``); return the main rank's result.

    Each rank gets ``OMP_NUM_THREADS=1``; compiled DeepSpeed ops go to ``TORCH_EXTENSIONS_DIR`` (default:
    the misstep cache). A failed rank becomes a MisstepError quoting its error.
    """
    job_file = folder / "job.json"
    job_file.write_text(job.model_dump_json(indent=2))
    (folder / RESULT).unlink(missing_ok=True)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "misstep.training.worker", str(job_file)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "TORCH_EXTENSIONS_DIR": os.environ.get("TORCH_EXTENSIONS_DIR", str(cache_dir() / "torch_extensions"))}
    log = folder / LOG
    with log.open("wb") as out, subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                                 stderr=subprocess.STDOUT) as process:
        assert isinstance(process.stdout, io.BufferedReader)
        while chunk := process.stdout.read1(4096):
            out.write(chunk)
            if not quiet:
                sys.stderr.buffer.write(chunk)
                sys.stderr.flush()
        code = process.wait()
    if code != 0 or not (folder / RESULT).is_file():
        raise MisstepError(f"training with {processes} processes failed (exit code {code}): {_reason(log)}\n"
                           f"full output: {log}")
    result: dict[str, Any] = read_json(folder / RESULT)
    return result


EXCEPTION = re.compile(r"^(?:\[rank\d+\]: )?(\w+(?:\.\w+)*(?:Error|Exception|Interrupt)\b.*)$")


def _reason(log: Path) -> str:
    """The misstep error a rank printed, else the first exception a rank raised, else the output's end."""
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    for line in lines:
        if ERROR_PREFIX in line:
            return line.split(ERROR_PREFIX, 1)[1]
    for line in lines:
        if (match := EXCEPTION.match(line)) and not match.group(1).startswith("torch.distributed.elastic"):
            return match.group(1)
    return "\n".join(lines[-15:])
