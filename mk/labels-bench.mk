# Labels flow back: the benchmark that proves new labels improve the retrained model.
BUDGET ?= 500
SEEDS ?= 3
LABELS_BENCH_ARGS ?=

.PHONY: bench-labels

bench-labels: setup ## 2013 champion, 2015 traffic, drift, labels by uncertainty vs random, retrain, score on 2016 (BUDGET=500[,…] SEEDS=3)
	nice $(BIN)/python benchmarks/bench_labels.py --budgets $(BUDGET) --seeds $(SEEDS) $(LABELS_BENCH_ARGS)
