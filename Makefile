# The two commands a newcomer needs:
#   make demo   set up and run the market-research case offline
#   make test   set up and run every test (unit, notebooks, browser)
.PHONY: demo test lint format bench setup setup-dev

setup:
	bash scripts/setup.sh

setup-dev:
	bash scripts/setup.sh --dev

GOAL = Write a market research report on solid-state batteries for EV makers

demo: setup
	.venv/bin/orchestra-nb run --goal "$(GOAL)" \
		--functions notebooks/market_research.py \
		--llm "replay:notebooks/recordings/market_research.json?latency=0.3" \
		--store sqlite:///out/demo/results.db --no-cache --out out/demo

test: setup-dev
	.venv/bin/python -m pytest

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

format:
	.venv/bin/ruff format . && .venv/bin/ruff check --fix .

bench: setup-dev
	.venv/bin/python bench/run_all.py
