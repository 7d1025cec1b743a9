# The two commands of the README: `make course` and `make test`. Both start from a bare Python 3.10+.
PY ?= python3
VENV := .venv
CAMP := $(VENV)/bin/camp
export OMP_NUM_THREADS ?= 1
# No model hub is needed: the course runs on the embedded tiny model built locally.
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup tool-envs sandbox-deps browser-deps course test unit lint lab clean

# The core env (notebook kernel + camp) and the tiny model; no-ops when already current.
setup:
	PYTHONPATH=. $(PY) -m camp env create core
	$(CAMP) tiny

# The heavy tools' own envs, which the tests run the real tools in. Independent of each other: `make -j4 tool-envs`
# builds them side by side (pip mostly waits on downloads and disk; each env has its own folder, lock and log).
TOOL_ENVS := xtuner opencompass llamaindex huixiangdou
tool-envs: $(addprefix env-,$(TOOL_ENVS))
env-%: setup
	$(CAMP) env create $*

# Model-written code (agents' Python tool) runs inside bubblewrap, a Debian package: installed when missing.
sandbox-deps:
	@command -v bwrap >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq bubblewrap; \
		else echo "camp: install bubblewrap first (sudo apt-get install bubblewrap)" >&2; exit 1; fi; }

# The browser tests (tests/ui): Debian's Chromium, a CJK and an emoji font (apt), Playwright's Python package in the core env
# (pinned; it drives that Chromium, no browser download). Installed when missing.
PLAYWRIGHT := playwright==1.65.2
browser-deps: setup sandbox-deps
	@command -v chromium >/dev/null 2>&1 && [ -e /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc ] || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium fonts-wqy-zenhei fonts-noto-color-emoji; \
		else echo "camp: install Chromium and a CJK font first (sudo apt-get install chromium fonts-wqy-zenhei fonts-noto-color-emoji)" >&2; \
			exit 1; fi; }
	@$(VENV)/bin/python -c "import importlib.metadata as m; assert '$(PLAYWRIGHT)' == 'playwright==' + m.version('playwright')" \
		2>/dev/null || \
		$(VENV)/bin/python -m pip install -q --disable-pip-version-check "$(PLAYWRIGHT)"

course: setup
	$(CAMP) course --profile cpu-tiny

lint: setup
	$(VENV)/bin/ruff check .

# Two pytest-xdist workers: the heavy tests run single-threaded, so a 2-core machine runs two at once
# (tests/conftest.py keeps each file, or each lesson, on one worker). TEST_WORKERS=0 runs them in one process.
TEST_WORKERS ?= 2
test: setup lint
	$(MAKE) -j6 tool-envs sandbox-deps browser-deps
	$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

# The unit tests alone (no tool runs, no notebooks): under a minute.
unit: setup
	$(VENV)/bin/python -m pytest -m "not integration and not notebook and not slow" -q

# Only this machine can reach it (use an ssh tunnel from yours); root (dev containers) needs --allow-root.
lab: setup
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/jupyter lab notebooks --ip 127.0.0.1 \
		$$([ "$$(id -u)" = 0 ] && echo --allow-root)

clean:
	rm -rf .camp/runs
