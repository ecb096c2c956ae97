#!/usr/bin/env bash
# The GPU check (issue 19): every GPU figure of benchmarks/ from one short run on one lent GPU.
#   bash benchmarks/gpu_check.sh --prepare            here: fill the git-ignored .gpu/ for the two device calls
#   bash benchmarks/gpu_check.sh --receive            GPU machine, call 1 (carry .gpu/1): keep the model's part 1
#   bash benchmarks/gpu_check.sh --out DIR            GPU machine, call 2 (carry .gpu/2): one JSON per step in DIR
#   bash benchmarks/gpu_check.sh --smoke --out DIR    every step with a tiny model and tiny sizes on CPU
# benchmarks/gpu_check.py does the work (its docstring says what and why); benchmarks/RESULTS.md ("GPU check")
# has the exact device calls. $PYTHON overrides the interpreter (default: python3).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "${PYTHON:-python3}" "$here/gpu_check.py" "$@"
