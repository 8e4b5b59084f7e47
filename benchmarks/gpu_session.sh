#!/usr/bin/env bash
# The prepared GPU session (issue 18): runs on the lent machine as it is (python3 3.12, torch, no PyAV,
# no Ray, the repo copied, not installed). Carried wheels (.whl/, at least PyAV's) are installed into
# a target folder first. Every step runs under its own timeout (together 300 s) and writes its own
# file under OUT as it goes; the summary comes last. At most 8 files. See benchmarks/README.md for
# the exact device call.
#
#   bash benchmarks/gpu_session.sh OUT                 # on the lent GPU
#   bash benchmarks/gpu_session.sh --cpu OUT           # rehearsal here: adcsr-tiny on the CPU (< 5 min)
#   bash benchmarks/gpu_session.sh --cpu --smoke OUT   # one row per step (the suite's smoke test)
set -uo pipefail
cpu=0 smoke=0
while [ $# -gt 1 ]; do
    case "$1" in --cpu) cpu=1; shift ;; --smoke) cpu=1; smoke=1; shift ;; *) break ;; esac
done
out="${1:?usage: gpu_session.sh [--cpu] [--smoke] OUT}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
flags=""
[ $cpu = 1 ] && flags="--cpu"
[ $smoke = 1 ] && flags="--cpu --smoke"
site="${TMPDIR:-/tmp}/vsr-site"
if compgen -G ".whl/*.whl" >/dev/null; then
    if [ $cpu = 1 ]; then  # rehearsal: check that the carried PyAV wheel installs for the lent machine's 3.12
        if [ $smoke = 0 ]; then
            python3 -m pip install -q --dry-run --python-version 3.12 --only-binary=:all: --no-deps --target "$site" \
                --no-index --find-links .whl av || { echo "the carried PyAV wheel does not install for Python 3.12"; exit 1; }
            echo "== wheels: the carried PyAV wheel installs for Python 3.12"
        fi
    else
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl \
            || { echo "installing the carried wheels failed"; exit 1; }
        export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the repo itself (copied, not installed)
steps=""
step() {  # step NAME SECONDS COMMAND...: run under its own timeout, note its exit code
    local name="$1" limit="$2"
    shift 2
    echo "== $name (at most ${limit} s)"
    timeout -k 5 "$limit" "$@"
    steps="$steps $name=$?"
}
run=(python3 benchmarks/gpu_session.py)
# $flags is meant to split (it is empty, --cpu, or --cpu --smoke)
step env 20 "${run[@]}" env --out "$out" $flags
step cuda_tests 45 bash -c "python3 -m pytest -q -p no:cacheprovider -m cuda tests/test_engine.py > '$out/cuda_tests.txt' 2>&1"
step adcsr 75 "${run[@]}" adcsr --out "$out" $flags
step groupnorm 15 "${run[@]}" groupnorm --out "$out" $flags
step tiles 35 "${run[@]}" tiles --out "$out" $flags
step bench 50 "${run[@]}" bench --out "$out" $flags
step compile 55 "${run[@]}" compile --out "$out" $flags  # last: a compile can take most of its minute
"${run[@]}" summary --out "$out" $flags --steps "${steps# }"
