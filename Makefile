# The README's two commands: `make serve` and `make test`. Each prepares what it needs first.
.PHONY: serve test lint bootstrap bench openapi types examples vendor

# Ctrl-C is how the service is stopped: its exit status 130 is not an error for make to report.
SERVE = .venv/bin/elasticache-local serve
serve:
	@deploy/bootstrap.sh
	@$(SERVE) || [ $$? -eq 130 ]

test: lint
	.venv/bin/python -m pytest -q -p no:cacheprovider

# ruff and mypy (strict on controlplane/ and engine/); the pre-commit hooks run the same two.
lint: bootstrap
	.venv/bin/ruff check controlplane engine tests bench examples
	.venv/bin/mypy

bootstrap:
	@deploy/bootstrap.sh --dev

bench: bootstrap
	.venv/bin/python -m bench

openapi: bootstrap
	.venv/bin/python -m controlplane.admin.export openapi/openapi.json

# controlplane/model/{messages,errors,operations}.py from the installed botocore model; a test fails when they drift.
types: bootstrap
	.venv/bin/python -m controlplane.model.generate

# The examples (examples/README.md), each with its failover drill, against a freshly started service
# (examples/conftest.py starts it and stops it, and every node, at the end). `make test` runs them too.
examples: bootstrap
	.venv/bin/python -m pytest -q -p no:cacheprovider examples

# The dashboard's front-end libraries from the npm registry, pinned by version and sha512
# (controlplane/dashboard/vendor.py): the only writer of controlplane/dashboard/static/vendor/.
vendor: bootstrap
	.venv/bin/python -m controlplane.dashboard.vendor
