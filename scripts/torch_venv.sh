# Sourced by scripts/interop and scripts/bench-torch: the Python venv with PyTorch, transformers and
# PEFT from PyPI (pinned; several GB, as PyPI's torch brings CUDA wheels), built once in
# $LORAFUSE_CACHE/interop-venv. Sets VENV.
VENV="$LORAFUSE_CACHE/interop-venv"
TORCH_PIP_PKGS=(torch==2.15.0 transformers==5.23.0 peft==0.21.2 safetensors==0.8.0)
if ! "$VENV/bin/python" -c 'import torch, transformers, peft, safetensors' 2>/dev/null; then
  echo "== python venv $VENV (${TORCH_PIP_PKGS[*]})"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q --progress-bar off "${TORCH_PIP_PKGS[@]}"
fi
"$VENV/bin/python" -c 'import torch, transformers, peft; print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}")'
