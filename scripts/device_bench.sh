#!/usr/bin/env bash
# `bert-flax bench --suite` on a borrowed accelerator machine whose Python has JAX, flax, optax, orbax and torch
# but not this project's pins (transformers 5 has no Flax BERT), and no network.
#
#   scripts/device_bench.sh wheels          # here, with network: the pinned wheels into .whl/ (git-ignored)
#   scripts/device_bench.sh run [OPTIONS]   # there: install .whl/*.whl into /tmp/bert_flax_site, then
#                                           # bert-flax bench --suite --out DIR/suite OPTIONS
#
# `run` writes DIR/suite.md and DIR/suite.json (DIR: $OUT when set, else bench-suite/), rewritten after every
# row, so a command stopped at its limit still leaves the rows done. OPTIONS are bench's (--suite NAME,
# --baseline NAME, --time-limit MINUTES, --steps N, ...). The accelerator suite stops starting rows after
# 7.5 minutes by itself (the whole command: under 8).
set -euo pipefail
cd "$(dirname "$0")/.."

# What transformers 4.57.6 (the last with Flax BERT) needs that such an image may hold in other versions;
# pure Python except tokenizers (abi3: any CPython 3.9+). Versions as this project tests them.
WHEELS=(transformers==4.57.6 huggingface-hub==0.36.2 tokenizers==0.22.2)
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64)
SITE=/tmp/bert_flax_site

fetch_wheels() {
  local platform_flags=()
  for platform in "${PLATFORMS[@]}"; do platform_flags+=(--platform "$platform"); done
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platform_flags[@]}" -d .whl "${WHEELS[@]}"
  ls -l .whl
}

run_suite() {
  local out="${OUT:-bench-suite}"
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl
    export PYTHONPATH="$PWD:$SITE${PYTHONPATH#"$PWD"}"
  fi
  export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 BERT_FLAX_CACHE="${BERT_FLAX_CACHE:-/tmp/bert_flax_cache}"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
  python3 -m bert_flax.cli bench --suite --out "$out/suite" "$@"
}

case "${1:-}" in
  wheels) fetch_wheels ;;
  run) shift; run_suite "$@" ;;
  *) sed -n '2,12p' "$0" >&2; exit 2 ;;
esac
