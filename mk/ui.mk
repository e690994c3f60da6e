# Dashboards: the MLflow UI, the status screen and the latest Evidently report, all on
# the local state ($CIVICSENSE_HOME, default .civicsense) and bound to 127.0.0.1. README: Dashboards.
UI_HOME = $(abspath $(or $(CIVICSENSE_HOME),.civicsense))
# PORT is shared with `make serve` (default 8080 there): only a PORT given by the user counts here.
USER_PORT = $(if $(filter command line environment,$(origin PORT)),$(PORT))
UI_PORT = $(or $(USER_PORT),5000)
REPORT_PORT = $(or $(USER_PORT),8000)
REPORTS = $(or $(CIVICSENSE_REPORTS_URI),$(UI_HOME)/reports)

.PHONY: ui status report

ui: setup ## The MLflow UI on the local store: runs, versions + aliases, metrics (PORT=5000)
	@test -f $(UI_HOME)/mlflow.db || { echo "no MLflow store at $(UI_HOME)/mlflow.db: run \`make run\` first"; exit 2; }
	@echo "MLflow UI: http://127.0.0.1:$(UI_PORT)/#/models/civicsense-sentiment (store $(UI_HOME)/mlflow.db; Ctrl-C stops it)"
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow server --host 127.0.0.1 \
	  --port $(UI_PORT) --workers 1 --backend-store-uri sqlite:///$(UI_HOME)/mlflow.db \
	  --artifacts-destination $(UI_HOME)/mlartifacts

status: setup ## One screen: champion/challenger, last drift check, retraining, server, images
	@$(BIN)/civicsense status

report: setup ## Print the latest Evidently drift report's path and serve the reports on 127.0.0.1 (PORT=8000)
	@case "$(REPORTS)" in gs://*) echo "reports are in $(REPORTS): open them from GCS"; exit 2;; esac
	@latest=$$(ls -1 $(REPORTS)/drift-*.html 2>/dev/null | tail -n 1); \
	  test -n "$$latest" || { echo "no drift report under $(REPORTS): run \`make monitor\` first"; exit 2; }; \
	  echo "latest report: $$latest"; \
	  echo "serving $(REPORTS) on http://127.0.0.1:$(REPORT_PORT)/$$(basename $$latest) (Ctrl-C stops it)"
	$(BIN)/python -m http.server $(REPORT_PORT) --bind 127.0.0.1 --directory $(REPORTS)
