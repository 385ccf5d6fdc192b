# avsl-bench: every install step lives here (CI calls `make test` from a clean clone).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install browser test demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# Debian's Chromium for the leaderboard page test (skipped with a reason where it cannot be installed).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null; } || echo "chromium unavailable: browser test will be skipped"

test: install browser
	$(PY) -m pytest -q -p no:cacheprovider tests; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

demo: install
	$(PY) -m avsl_bench.demo --out demo-out

bench: install
	$(PY) bench/score_speed.py
	$(PY) bench/cut_speed.py
	$(PY) bench/train_speed.py --method ezvsl --recipe synthetic

clean:
	rm -rf demo-out .pytest_cache
