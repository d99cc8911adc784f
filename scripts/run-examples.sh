#!/usr/bin/env bash
# `make run`: inspects and runs every example actor through `sandflow exec`.
# Only the insecure `none` backend exists in this build, so the flag that allows it is
# passed explicitly (and sandflow says so loudly on stderr).
set -euo pipefail
bin=${1:-build/sandflow}
ex=$(cd "$(dirname "$0")/../examples/actors" && pwd)
run() {
    echo
    echo "\$ sandflow exec $*"
    "$bin" exec --insecure-no-sandbox "$@" || echo "(exit status $?)"
}

echo "== metadata, read without running the script"
echo "\$ sandflow inspect $ex/python/double.actor.py"
"$bin" inspect "$ex/python/double.actor.py"

echo
echo "== Python actors"
run "$ex/python/double.actor.py" --input input=21
run "$ex/python/normalize_record.actor.py" --input record='{"Name": "  Ada ", "email": "ADA@EXAMPLE.COM", "tmp": 1}' \
    --config '{"rename": {"Name": "name"}, "drop": ["tmp"]}'
run "$ex/python/running_stats.actor.py" --input value=4 --repeat 3
run "$ex/python/tokenize.actor.py" --input text='"The quick brown fox jumps over the lazy dog. The end."' \
    --config '{"stopwords": ["the"]}'
run "$ex/python/chunker.actor.py" --input items='[1, 2, 3, 4, 5]' --config '{"size": 2}'
run "$ex/python/validate_order.actor.py" --input order='{"id": "A7", "quantity": 0}'

echo
echo "== JavaScript actors"
run "$ex/js/double.actor.js" --input input=21
run "$ex/js/normalize_record.actor.js" --input record='{"Name": "  Ada ", "email": "ADA@EXAMPLE.COM", "tmp": 1}' \
    --config '{"rename": {"Name": "name"}, "drop": ["tmp"]}'
run "$ex/js/running_stats.actor.js" --input value=4 --repeat 3
run "$ex/js/tokenize.actor.js" --input text='"The quick brown fox jumps over the lazy dog. The end."' \
    --config '{"stopwords": ["the"]}'
run "$ex/js/chunker.actor.js" --input items='[1, 2, 3, 4, 5]' --config '{"size": 2, "delayMs": 50}'
run "$ex/js/validate_order.actor.js" --input order='{"id": "A7", "quantity": 0}'
