# Monitoring: drift job, the time-shift demo and the drift benchmark. docs/monitoring.md
MONITOR_ARGS ?=

.PHONY: monitor demo-drift bench-drift

monitor: setup ## Drift check of the inference log vs the champion (exit 0 ok, 1 drift, 2 could not run)
	$(BIN)/civicsense monitor $(MONITOR_ARGS)

demo-drift: setup ## Train on 2013, replay 2015 through the server, monitor, retrain, challenger
	$(BIN)/python benchmarks/bench_drift.py

bench-drift: setup ## demo-drift plus 20-window false-alarm count and the topic-shift check
	$(BIN)/python benchmarks/bench_drift.py --bench
