# Keyway — front door. Every target runs tools/setup first (idempotent, quiet when nothing is missing).
SWIFT ?= swift
SITE ?= Fixtures/sites/coworking.yaml
# Seconds per fuzz target: `make fuzz FUZZ_SECONDS=600` (optimised build); `make fuzz-smoke` (run by
# .ci/run, not by `make test`) runs each target briefly (debug build).
FUZZ_SECONDS ?= 60
FUZZ_TEST_SECONDS ?= 3
PY := .venv/bin/python

.PHONY: setup build run test bench hil clean tsan fuzz fuzz-smoke clock-ahead generate check-generated

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

fuzz: setup
	tools/fuzz --release --seconds $(FUZZ_SECONDS) $(TARGETS)

hil: setup
	@tools/setup hil
	tools/hil/run

# The XCTest suite and the Python peers with the clock 400 days ahead, in the `make hil` guest (.ci/run).
clock-ahead: setup
	@tools/setup hil
	tools/hil/clock-ahead

# Every fuzz target for a few seconds (its own libFuzzer + ASan build in .build-fuzz; .ci/run).
fuzz-smoke: setup
	tools/fuzz --seconds $(FUZZ_TEST_SECONDS)

# Thread sanitizer: the whole Swift suite, then the Python peers against the TSAN-built keyway. Any
# report fails the run (halt_on_error; keyway's reports under the peers also land in
# $(TSAN_SCRATCH)/tsan-peers.<pid>, checked afterwards, so one at server shutdown counts too).
# tools/tsan.supp holds only documented third-party false positives.
TSAN_SCRATCH ?= .build-tsan
TSAN_OPTS := halt_on_error=1 second_deadlock_stack=1 suppressions=$(CURDIR)/tools/tsan.supp
TSAN_PEER_LOG := $(CURDIR)/$(TSAN_SCRATCH)/tsan-peers
tsan: setup
	$(SWIFT) build --build-tests --sanitize=thread --scratch-path $(TSAN_SCRATCH)
	TSAN_OPTIONS="$(TSAN_OPTS)" $(SWIFT) test --skip-build --sanitize=thread --scratch-path $(TSAN_SCRATCH)
	@rm -f $(TSAN_PEER_LOG).*
	TSAN_OPTIONS="$(TSAN_OPTS) log_path=$(TSAN_PEER_LOG)" KEYWAY_BIN=$(CURDIR)/$(TSAN_SCRATCH)/debug/keyway \
	  KEYWAY_MAX_RESPONSE_S=15 $(PY) -m pytest -q Tests/peers; status=$$?; \
	  if ls $(TSAN_PEER_LOG).* >/dev/null 2>&1; then cat $(TSAN_PEER_LOG).*; \
	    echo "make tsan: ThreadSanitizer reports from keyway under the Python peers (above)"; exit 1; fi; \
	  exit $$status

# The control API's Swift types, server protocol and client, from Sources/KeywayAPI/openapi.yaml
# (docs/openapi.yaml): run after editing the document, commit the result. check-generated (.ci/run)
# fails when regenerating would change anything. The generator builds once into .build-openapi-generator.
generate: setup
	$(PY) tools/generate-api

check-generated: setup
	$(PY) tools/generate-api --check

clean:
	rm -rf .build .build-fuzz .build-tsan .build-openapi-generator .bench .fuzz
