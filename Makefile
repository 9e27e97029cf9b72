# The two commands of README.md: `make run` and `make test` (plus `make bench`).
# Both work from a fresh clone: they create .venv and install what they need.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# django-helpdesk for `make bench` to compare with, in a virtualenv of its own (ignored by git).
PEER_VENV := bench/results/django-helpdesk

.PHONY: run test lint lock bench servers clean translations messages

# requirements*.txt list every package of the tree with its hashes (`make lock`
# compiles them from requirements*.in), so an install gets exactly what CI tested.
# A stock Debian image lacks ensurepip until python3-venv is installed.
$(VENV)/.runtime: requirements.txt
	@python3 -c "import ensurepip" 2>/dev/null || { echo "Installing python3-venv (Debian package)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; }
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check --require-hashes -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PIP) install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.txt
	touch $@

## Portal (gunicorn, http://127.0.0.1:5000) and gateway together; Ctrl-C stops both.
run: $(VENV)/.runtime translations
	bash scripts/run.sh

## The whole suite, once against SQLite and once against a private PostgreSQL,
## with a private Dovecot for the IMAP poller and a headless Chromium for the portal.
## Split over PYTEST_WORKERS processes (pytest-xdist), each starting servers of its own:
## much of the suite waits on servers, timeouts and child processes, so two workers
## take about half the time even on two cores. PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= 2
test: $(VENV)/.dev servers lint translations
	$(PY) -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

## Compile the translation catalogs (helpdesk/translations/*/LC_MESSAGES/messages.po)
## into the .mo files the app reads; `make run` and `make test` call it.
translations: $(VENV)/.runtime
	$(VENV)/bin/pybabel compile --statistics -d helpdesk/translations

## After changing texts in code or templates: extract them and merge them into every
## catalog (new entries come out empty, for a translator to fill; docs/languages.md).
messages: $(VENV)/.runtime
	$(VENV)/bin/pybabel extract -F babel.cfg -k lazy_gettext -k N_ --no-location \
		--sort-output --project helpdesk -o helpdesk/translations/messages.pot .
	$(VENV)/bin/pybabel update --no-wrap --no-fuzzy-matching --ignore-obsolete \
		-i helpdesk/translations/messages.pot -d helpdesk/translations

## The linter and formatter check (ruff) and the type checker (mypy on helpdesk/ and mailgateway/),
## both configured in pyproject.toml. `make test` runs them first.
lint: $(VENV)/.dev
	$(VENV)/bin/ruff check --no-cache .
	$(VENV)/bin/ruff format --no-cache --check .
	$(VENV)/bin/mypy --no-incremental

## Recompile the locked requirements after changing requirements*.in.
lock: $(VENV)/.dev
	$(VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
		--no-emit-index-url --no-emit-find-links -o requirements.txt requirements.in
	$(VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
		--no-emit-index-url --no-emit-find-links -o requirements-dev.txt requirements-dev.in

## Benchmarks (not part of `make test`): tables with ratios to a ceiling, and to
## django-helpdesk run on the same mails (its own throwaway venv, under the ignored bench/results/).
bench: $(VENV)/.dev servers $(PEER_VENV)/.installed
	$(PY) -m bench.numbering_bench
	$(PY) -m bench.smtp_bench --peer-python $(PEER_VENV)/bin/python
	$(PY) -m bench.hostile_bench
	$(PY) -m bench.imap_bench --peer-python $(PEER_VENV)/bin/python
	$(PY) -m bench.web_bench
	$(PY) -m bench.assistant_bench
	$(PY) -m bench.queue_visibility_bench
	$(PY) -m bench.lifecycle_bench
	$(PY) -m bench.outbound_bench

$(PEER_VENV)/.installed: bench/peer-requirements.txt
	rm -rf $(PEER_VENV)
	python3 -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/pip install --quiet --disable-pip-version-check --require-hashes -r bench/peer-requirements.txt
	touch $@

## Debian packages the tests need, installed only when missing: PostgreSQL, PgBouncer
## and Dovecot (the harness starts its own servers on free loopback ports), Chromium (driven by
## Playwright; never `playwright install`, which downloads a browser) and openssl
## (the outbound TLS tests' certificate).
servers:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	test -x /usr/sbin/dovecot || missing="$$missing dovecot-imapd"; \
	test -x /usr/sbin/pgbouncer || missing="$$missing pgbouncer"; \
	test -x /usr/bin/chromium || missing="$$missing chromium"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	if [ -n "$$missing" ]; then \
		echo "Installing$$missing (Debian packages) for the tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

clean:
	rm -rf $(VENV) .pytest_cache
