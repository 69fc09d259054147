# Benchmarks (see bench/README.md and docs/BENCHMARKS.md). Nothing here asserts timings.
PY ?= .venv/bin/python
THREADS ?= 2
RESULTS := bench/results

.PHONY: bench bench-quick bench-networks bench-serve bench-1024 bench-scale bench-graph bench-encode bench-engines \
	bench-ov-rewrites

## make bench: networks (64/256 px, batch 1/4/16) + serving matrix + 1024 px scale run; prints tables, writes
## $(RESULTS)/*.json, rewrites the generated section of docs/BENCHMARKS.md (about 40-50 min on 2 idle cores).
bench: bench-networks bench-serve bench-scale bench-graph bench-encode bench-ov-rewrites bench-engines
	$(PY) bench/report.py $(RESULTS)/networks.json $(RESULTS)/serve_matrix.json --scale $(RESULTS)/scale_1024.json \
		--graph $(RESULTS)/graph_variants.json --encode $(RESULTS)/encode.json --engines $(RESULTS)/engines.json \
		--ov-rewrites $(RESULTS)/ov_rewrites.json --command "make bench"

bench-networks:
	@mkdir -p $(RESULTS)
	@echo "load average: $$(cat /proc/loadavg 2>/dev/null)"
	$(PY) bench/networks_bench.py --threads $(THREADS) --json $(RESULTS)/networks.json

bench-serve:
	@mkdir -p $(RESULTS)
	@echo "load average: $$(cat /proc/loadavg 2>/dev/null)"
	$(PY) bench/serve_matrix.py --threads $(THREADS) --json $(RESULTS)/serve_matrix.json

## PNG (fpng vs Pillow zlib 1) and JPEG per image at 64/256/1024 px, one core (about 1 min); table in the output.
bench-encode:
	@mkdir -p $(RESULTS)
	$(PY) bench/encode_bench.py --json $(RESULTS)/encode.json

## Up-sampling graph rewrites (polyphase / merged conv + DepthToSpace, separable FIR) against the exported form,
## at the 64, 256 and 1024 px blocks of FFHQ config F, one thread (about 3 min).
bench-graph:
	@mkdir -p $(RESULTS)
	$(PY) bench/graph_variants.py --threads 1 --seconds 2 --json $(RESULTS)/graph_variants.json

## The OpenVINO engine's graph rewrites (Winograd 3x3 convs, phase up-sampling convs) one layer at a time against
## the layers as exported, at the layer shapes of FFHQ config F, 2 threads, batch 2 (about 2 min).
bench-ov-rewrites:
	@mkdir -p $(RESULTS)
	$(PY) bench/ov_rewrites.py --threads $(THREADS) --batch 2 --rounds 8 --json $(RESULTS)/ov_rewrites.json

## onnxruntime vs OpenVINO fp32/bf16 at 256 px: raw synthesis, then end-to-end Generate per engine in 5 rounds
## interleaved with the raw onnxruntime session (medians; about 6 min).
bench-engines:
	@mkdir -p $(RESULTS)
	@echo "load average: $$(cat /proc/loadavg 2>/dev/null)"
	$(PY) bench/engine_bench.py --resolutions 256 --batches 1,4 --threads $(THREADS) --error-seeds 16 --min-time 0 \
		--min-reps 3 --serve --serve-requests 32 --serve-rounds 5 --serve-warmup 8 --json $(RESULTS)/engines.json

## A smoke run (about 2 min): 64 px only, short timings, 40 requests per row; does not touch the docs.
bench-quick:
	@mkdir -p $(RESULTS)
	$(PY) bench/networks_bench.py --quick --threads $(THREADS) --json $(RESULTS)/networks-quick.json
	$(PY) bench/serve_matrix.py --quick --threads $(THREADS) --json $(RESULTS)/serve_matrix-quick.json

## 1024 px (channel_base 32768), batch 1 only: minutes for the export and verification alone.
bench-1024:
	@mkdir -p $(RESULTS)
	$(PY) bench/networks_bench.py --resolutions 1024 --batches 1 --threads $(THREADS) --json $(RESULTS)/networks-1024.json

## 1024 px, the reference workload (part of make bench): FFHQ config F exported (peak RSS), served at default
## settings (RSS, time to SERVING, img/s, p50/p99) vs raw sessions and PyTorch, and an onnxruntime profile.
## Every step is its own process, one after the other; about 30-40 min on 2 idle cores.
bench-scale:
	@mkdir -p $(RESULTS)
	@echo "load average: $$(cat /proc/loadavg 2>/dev/null)"
	$(PY) bench/scale_1024.py --threads $(THREADS) --json $(RESULTS)/scale_1024.json
