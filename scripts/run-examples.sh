#!/usr/bin/env bash
# `make run`: inspects and runs every example actor through `sandflow exec`, then runs an
# example graph through the runtime server. Every script runs in the default sandbox
# (`sandflow doctor` explains a host where it cannot).
set -euo pipefail
bin=${1:-build/sandflow}
ex=$(cd "$(dirname "$0")/../examples/actors" && pwd)
run() {
    echo
    echo "\$ sandflow exec $*"
    "$bin" exec "$@" || echo "(exit status $?)"
}

echo "== the sandbox: which backend \`auto\` picks on this host, and why (sandflow doctor)"
"$bin" doctor | grep '^auto (level' || true

echo
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

echo
echo "== A flow graph through the runtime server: Python and JavaScript actors with native"
echo "   nodes (fan-out, state, streaming, error routing), examples/graphs/orders.graph.json"
graphs=$(cd "$(dirname "$0")/../examples/graphs" && pwd)
serve_out=$(mktemp)
"$bin" serve --listen 127.0.0.1:0 >"$serve_out" &
serve_pid=$!
trap 'kill "$serve_pid" 2>/dev/null || true; wait "$serve_pid" 2>/dev/null || true; rm -f "$serve_out"' EXIT
for _ in $(seq 100); do grep -q listening "$serve_out" && break; sleep 0.1; done
url=$(sed -n 's/.*"listening":"\([^"]*\)".*/\1/p' "$serve_out")
if [ -z "$url" ]; then
    echo "(the runtime server did not start)"
    exit 1
fi
echo "\$ sandflow serve --listen 127.0.0.1:0"
grep listening "$serve_out"
state=$(sed -n 's/.*"state":"\([^"]*\)".*/\1/p' "$serve_out")
echo "(the server keeps every instance's committed state in $state: it is still there"
echo " after the server stops, crashes or restarts; --state memory keeps none, --state"
echo " sqlite:PATH chooses the file)"
echo "\$ sandflow run $graphs/orders.graph.json --runtime $url"
"$bin" run "$graphs/orders.graph.json" --runtime "$url" || echo "(exit status $?)"
