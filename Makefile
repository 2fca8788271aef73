# Everything a fresh Debian machine needs, from one command each:
#   make demo    install what is missing, build, run the demo pipeline
#   make test    install what is missing, build, run every test and the example service
#   make bench   run the benchmarks
#   make bench-floor  what SQLite alone costs for W8's writes of a task, from C
#   make proto   regenerate Sources/COTLP from proto/
SHELL := /bin/bash
export PATH := /opt/swift/usr/bin:$(PATH)

SWIFT ?= swift
VENV := .build/venv
PYTHON_PACKAGES := opentelemetry-proto==1.45.2 prometheus-client==0.26.0
DEB_PACKAGES := pkg-config curl libsqlite3-dev libcurl4-openssl-dev libprotobuf-c-dev protobuf-c-compiler zlib1g-dev prometheus postgresql
PKG_CONFIG_MODULES := sqlite3 libcurl libprotobuf-c zlib
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps venv build test example demo bench bench-floor proto proto-check clean

all: build

## System packages: installed only when pkg-config (or the tool) cannot find them.
deps:
	@if command -v pkg-config >/dev/null && pkg-config --exists $(PKG_CONFIG_MODULES) \
	    && command -v protoc-c >/dev/null && command -v promtool >/dev/null && command -v curl >/dev/null \
	    && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  echo "system packages: present"; \
	else \
	  echo "system packages: installing $(DEB_PACKAGES)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(DEB_PACKAGES) >/dev/null; \
	fi

## The reference decoders for the tests, in a virtualenv inside the build folder.
venv: $(VENV)/.installed
$(VENV)/.installed:
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check $(PYTHON_PACKAGES)
	touch $@

build: deps
	$(SWIFT) build

proto-check: deps
	proto/generate.sh --check

test: deps venv proto-check
	$(SWIFT) build --build-tests
	# A test process that crashes can leave `swift test` waiting forever: bound the run.
	# One test at a time: many tests start processes, servers and signals, and
	# on two cores their deadlines hold only when they do not all run at once.
	# A throwaway PostgreSQL cluster (temporary folder, loopback port, unprivileged
	# user) for the PostgreSQL tests, stopped and deleted whatever happens.
	@pg=$$(mktemp -d -u /tmp/flujo-pg-XXXXXX); \
	uri=$$(Tests/Support/postgres.sh start $$pg) || { echo "could not start the PostgreSQL test server"; exit 1; }; \
	trap "Tests/Support/postgres.sh stop $$pg" EXIT; \
	echo "PostgreSQL test server: $${uri%%:*}://...@$${uri##*@}"; \
	FLUJO_TEST_POSTGRES_URI=$$uri FLUJO_TEST_PYTHON=$(CURDIR)/$(VENV)/bin/python \
	  timeout --kill-after=30 1500 $(SWIFT) test --skip-build --no-parallel
	$(MAKE) example

## The example service (Examples/HummingbirdService): built, started, one order and a scrape, SIGTERM.
example: deps
	timeout --kill-after=30 1200 Examples/HummingbirdService/check.sh

demo: deps
	$(SWIFT) build --product flujo
	$$($(SWIFT) build --show-bin-path)/flujo demo

bench: deps
	$(SWIFT) run -c release --package-path Benchmarks flujo-bench

bench-floor: deps
	$(SWIFT) build --product flujo
	cc -O2 -Wall -Wextra -ISources/CSQLiteVFS/include -o .build/sqlite-floor \
		Benchmarks/floor/sqlite-floor.c Sources/CSQLiteVFS/vfs.c $$(pkg-config --cflags --libs sqlite3)
	@folder=$$(mktemp -d) && trap 'rm -rf "$$folder"' EXIT && \
		$$($(SWIFT) build --show-bin-path)/flujo demo --db "$$folder/schema.db" >/dev/null && \
		.build/sqlite-floor "$$folder/schema.db" "$$folder/floor.db"

proto: deps
	proto/generate.sh

clean:
	rm -rf .build .flujo
