# The project's commands. `make demo` is the README's main command, `make test` its test
# command.
PY := .venv/bin/python
PYTEST := .venv/bin/pytest

.PHONY: deps lab-up lab-down lab-status demo test unit integration lint bench

deps:
	bash scripts/install-deps.sh

lab-up: deps
	$(PY) -m lab up staging
	$(PY) -m lab up production

lab-down: deps
	$(PY) -m lab down

lab-status: deps
	$(PY) -m lab status

demo: deps
	$(PY) -m lab up staging
	.venv/bin/pyinfra -y inventories/lab.py deploy.py

lint: deps
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

unit: deps
	$(PYTEST) -q tests/unit

integration: lab-up
	$(PYTEST) -q tests/integration

test: lint
	$(PYTEST) -q -ra --durations=0 --durations-min=2

bench: deps
	$(PY) bench/run.py
	$(PY) bench/availability.py --app-hosts 3
	$(PY) bench/availability.py --app-hosts 8 --skip-one-host
	$(PY) bench/availability.py --rates 100 600 1000
	$(PY) bench/schema.py
	$(PY) bench/guard.py
	$(PY) bench/fleet.py
	$(PY) bench/backup.py
	$(PY) bench/drift.py
	$(PY) bench/build_host.py
