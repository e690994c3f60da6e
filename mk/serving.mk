# Serving: the KServe model server on this machine, and its benchmarks.
PORT ?= 8080
MODEL_URI ?=
SERVE_ARGS := --port $(PORT) $(if $(MODEL_URI),--model-uri $(MODEL_URI))

.PHONY: serve bench-serve bench-fairness

serve: setup ## Serve the champion over KServe V1+V2 on 0.0.0.0:PORT (default 8080; MODEL_URI=…)
	$(BIN)/civicsense serve $(SERVE_ARGS)

bench-serve: setup ## Benchmark the server against in-process, MLServer and `mlflow models serve`
	$(BIN)/python benchmarks/bench_serve.py $(BENCH_ARGS)

bench-fairness: setup ## One heavy sender (8 connections) against a light client: latency, 429s
	$(BIN)/python benchmarks/bench_fairness.py $(if $(MODEL_URI),--model-uri $(MODEL_URI)) $(BENCH_ARGS)
