# Labeling: Label Studio in a venv of its own (it pins its own Django, pydantic…),
# used by the `labelstudio` tests and by anyone annotating locally. See docs/labeling.md.
LABEL_STUDIO_VERSION := 1.23.2
LS_VENV := .venv-labelstudio

.PHONY: label-studio-venv test-labelstudio

$(LS_VENV)/.installed: mk/labels.mk
	@test -x $(LS_VENV)/bin/python || $(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
	    label-studio==$(LABEL_STUDIO_VERSION)
	@touch $@

label-studio-venv: $(LS_VENV)/.installed ## Label Studio 1.23.2 in .venv-labelstudio (≈ 1 GB, a few min)

test-labelstudio: setup label-studio-venv ## The tests against a real Label Studio (127.0.0.1, SQLite)
	$(BIN)/python -m pytest -m labelstudio $(PYTEST_ARGS)
