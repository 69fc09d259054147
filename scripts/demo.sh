#!/usr/bin/env bash
# The main job: export the bundled demo model, then render images and a style-mixing grid with onnxruntime.
source "$(dirname "$0")/_venv.sh" export,server,client
out=${1:-out/demo}
.venv/bin/styleserve-export --demo models/demo --overwrite --fp16
.venv/bin/styleserve-render models/demo "$out" --seeds 0-7 --psi 0.7
echo "images: $out/"
