# s3slower — run `make run` to trace, `make test` to test (as root, Debian 12+).
VENV := .venv
S3SLOWER := $(VENV)/bin/s3slower
ARGS ?=

.PHONY: dev run test test-unit bench clean

dev:
	@packaging/setup-host.sh

run: dev
	$(S3SLOWER) run $(ARGS)

# Every tests/setup-*.sh installs what one group of tests needs (idempotent).
test:
	@packaging/setup-host.sh --test
	@for s in tests/setup-*.sh; do bash "$$s" || exit 1; done
	$(VENV)/bin/python -m pytest -q -rs --durations=15 $(ARGS)

test-unit:
	$(VENV)/bin/python -m pytest -q -m "not e2e" $(ARGS)

bench: dev
	@$(VENV)/bin/python -m pip install -q py-spy || echo "py-spy not installed: benches run without profiles"
	$(VENV)/bin/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info

# make deb / make rpm (issue 7)
include packaging/packaging.mk
