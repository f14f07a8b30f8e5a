# BatchNotebook — the two commands the README promises, and a few helpers.
.PHONY: dev dev-down test unit lint format docs clean bench

dev:            ## install what is missing and start the whole local stack
	@dev/up.sh

dev-down:       ## stop everything `make dev` started
	@dev/down.sh

test:           ## install what is missing and run the whole suite on the real components
	@dev/test.sh

unit:           ## fast tests only (no API server, no Slurm)
	@dev/python.sh
	.venv/bin/python -m pytest -q tests/unit

lint:           ## ruff, mypy and shellcheck (make test runs it first)
	@dev/lint.sh

format:
	.venv/bin/ruff format .

docs:           ## regenerate docs/configuration.md from the CRD schemas
	@dev/python.sh
	.venv/bin/python dev/crd_reference.py

# N: how many notebooks per run; the hubs (ours and batchspawner's) run at most 300.
N ?= 10 100 1000
bench:          ## measure scale and speed beside batchspawner: bench/results/results.md + PNGs
	@dev/python.sh
	.venv/bin/python -c 'import matplotlib' 2>/dev/null || .venv/bin/pip install --quiet -e '.[operator,hub,test,bench]'
	@dev/slurm.sh install
	@dev/slurm.sh start
	@dev/hub.sh install
	@bench/setup-batchspawner.sh
	@bench/setup-operator-venv.sh
	.venv/bin/python -m bench.run --n $(N) --operator-python .venv-operator/bin/python

clean:          ## forget the local state (not the build cache)
	rm -rf .dev .test
