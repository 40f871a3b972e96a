# The README's two commands: `make serve` and `make test`. Each prepares what it needs first.
.PHONY: serve test lint bootstrap bench openapi

serve:
	@deploy/bootstrap.sh
	.venv/bin/elasticache-local serve

test:
	@deploy/bootstrap.sh --dev
	.venv/bin/ruff check controlplane engine tests bench
	.venv/bin/mypy
	.venv/bin/python -m pytest -q -p no:cacheprovider

bootstrap:
	@deploy/bootstrap.sh --dev

bench:
	@deploy/bootstrap.sh --dev
	.venv/bin/python -m bench

openapi:
	@deploy/bootstrap.sh --dev
	.venv/bin/python -m controlplane.admin.export openapi/openapi.json
