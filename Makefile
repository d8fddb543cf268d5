# The course's two commands. Both set everything up first (idempotent, seconds when done).
.PHONY: lab test test-fast
lab:  ## set up, then start the course: JupyterLab on notebooks/ with the embedded lab running
	@scripts/setup.sh
	@scripts/lab.sh
test: ## set up (with Chromium for the browser test), then run the whole test suite
	@scripts/setup.sh chromium
	@scripts/test.sh
test-fast: ## the fast tier, under a minute: pure and fake-lab tests (no model, no sandboxes); needs .venv
	@PATH="$(CURDIR)/.venv/bin:$$PATH" .venv/bin/pytest -q -p no:cacheprovider -p no:nbval -m fast
