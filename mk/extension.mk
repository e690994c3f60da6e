# The browser extension: build it, and test it in a real Chromium.
EXT_PYTHON := $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)

.PHONY: extension test-extension test-extension-container

extension: ## Build the browser extension: extension/dist/ (load unpacked) + build/civicsense-extension.zip
	$(EXT_PYTHON) extension/build.py

test-extension: setup extension ## Test the extension in Debian's Chromium against the real model server
	$(BIN)/python -m pytest tests/extension $(PYTEST_ARGS)

test-extension-container: setup extension images ## The extension's browser tests against the serving image (needs Docker)
	CIVICSENSE_EXTENSION_TARGET=container $(BIN)/python -m pytest tests/extension $(PYTEST_ARGS)
