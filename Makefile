# The course's two commands. Both set everything up first (idempotent, seconds when done).
.PHONY: lab test
lab:  ## set up, then start the course: JupyterLab on notebooks/ with the embedded lab running
	@scripts/setup.sh
	@scripts/lab.sh
test: ## set up (with Chromium for the browser test), then run the whole test suite
	@scripts/setup.sh chromium
	@scripts/test.sh
