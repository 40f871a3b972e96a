# The README's two commands: `make serve` and `make test`. Each prepares what it needs first.
.PHONY: serve test lint bootstrap bench openapi types

serve:
	@deploy/bootstrap.sh
	.venv/bin/elasticache-local serve

test: lint
	.venv/bin/python -m pytest -q -p no:cacheprovider

# ruff and mypy (strict on controlplane/ and engine/); the pre-commit hooks run the same two.
lint: bootstrap
	.venv/bin/ruff check controlplane engine tests bench
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
