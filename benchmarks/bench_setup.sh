#!/usr/bin/env bash
# The environment set-up of `make setup` with pip's byte-compilation and without it (--no-compile,
# what the Makefile does), side by side in one run: a fresh venv each time, the same installs from
# pip's cache, alternating the two modes so that machine noise hits both.
#
#     bash benchmarks/bench_setup.sh [ROUNDS]      # default 1 round = one set-up per mode
#
# Prints the wall seconds of every set-up and the ratio of the medians (compile / no-compile).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
ROUNDS=${1:-1}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

setup() {   # $1: extra pip flag ("" or --no-compile)
    local venv="$WORK/venv" pip
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    pip="$venv/bin/python -m pip install -q $1"
    $pip torch==2.14.1 torchvision==0.29.1
    $pip -c constraints.txt -e ".[dev]"
    $pip --no-deps torchreid==0.2.5 facenet-pytorch==2.6.0
}

declare -a with without
for ((r = 0; r < ROUNDS; r++)); do
    for mode in compile no-compile; do
        flag=""; [[ $mode == no-compile ]] && flag="--no-compile"
        t0=$SECONDS
        setup "$flag" 2>/dev/null
        t=$((SECONDS - t0))
        echo "round $r $mode: ${t} s"
        if [[ $mode == compile ]]; then with+=("$t"); else without+=("$t"); fi
    done
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
m1=$(median "${with[@]}"); m2=$(median "${without[@]}")
awk -v a="$m1" -v b="$m2" 'BEGIN {printf "median: compile %s s, no-compile %s s, ratio %.2fx\n", a, b, a / b}'
