#!/usr/bin/env bash
# A separate venv for the peer libraries the benchmark runs beside aegen (never imported by aegen).
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv-pythae
.venv-pythae/bin/pip install -q torch==2.14.1 torchvision==0.29.1 pythae==0.1.2 safetensors==0.8.0
