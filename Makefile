# Keyway — front door. Every target runs tools/setup first (idempotent, quiet when nothing is missing).
SWIFT ?= swift
SITE ?= Fixtures/sites/coworking.yaml
PY := .venv/bin/python

.PHONY: setup build run test bench hil clean

setup:
	@tools/setup

build: setup
	$(SWIFT) build

run: setup
	$(SWIFT) build --product keyway
	.build/debug/keyway serve --site $(SITE)

test: setup
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build
	$(PY) -m pytest -q Tests/peers

bench: setup
	$(SWIFT) build -c release --product keyway-bench
	$(SWIFT) build -c release --product keyway
	.build/release/keyway-bench

hil: setup
	@tools/setup hil
	tools/hil/run

clean:
	rm -rf .build .bench
