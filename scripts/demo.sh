#!/usr/bin/env bash
# The main job: export the bundled demo model, serve it over gRPC, and draw images + a style-mixing grid
# through the real client, into out/demo/ (or the folder given as $1).
source "$(dirname "$0")/_venv.sh" export,server,client
out=${1:-out/demo}
mkdir -p "$out" models
.venv/bin/styleserve export --demo models/demo --overwrite --fp16

log="$out/server.log"
.venv/bin/styleserve serve models --port 0 >"$log" 2>&1 &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null' EXIT
for _ in $(seq 600); do
  port=$(sed -n 's/.*listening on [^ ]*:\([0-9]*\).*/\1/p' "$log" | head -1)
  [ -n "$port" ] && break
  kill -0 $server 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.1
done
export STYLESERVE_TARGET="127.0.0.1:$port"
.venv/bin/styleserve health --wait 60
.venv/bin/styleserve models
.venv/bin/styleserve generate --model demo --seeds 0-7 --psi 0.7 --out "$out"
# Columns give the coarse ws 0-3 (4-8 px: head position, pose, face and hair shape); rows keep the rest.
.venv/bin/styleserve grid --model demo --psi 0.7 --styles 0-3 --out "$out/stylemix_grid.png"
kill -TERM $server && wait $server && trap - EXIT
echo "images: $out/ (server log: $log)"
