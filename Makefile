# Tailor — the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

GO          ?= go
BIN         := bin/tailor
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.6.1
# The test suite's shared local stack lives here for the length of one `make test`.
TEST_STACK  := $(CURDIR)/.tailor/test-stack
# make chaos runs on a stack of its own: it restarts Postgres and stalls the emulators.
CHAOS_STACK := $(CURDIR)/.tailor/chaos-stack
# Fuzz targets run briefly in every `make test` (package:target).
FUZZ        ?= ./pipeline/events:FuzzDecodeEvent ./templates:FuzzFromFiles ./templates:FuzzFast_MatchesLiquid ./pipeline/cdc:FuzzDecodeText ./preferences:FuzzDecodeChangeSet ./pipeline/delivery:FuzzBuildMIME ./pipeline/delivery:FuzzQP_MatchesTheStandardLibrary ./pipeline/tracking:FuzzRewrite ./pipeline/tracking:FuzzScanner_AgreesWithTheTokenizer ./pipeline/stream:FuzzDeaggregate ./internal/ddb:FuzzDecodeItems
FUZZTIME    ?= 5s

.PHONY: help tools build demo test unit fuzz bench chaos lint clean docs

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-7s %s\n", $$1, $$2}'

tools: ## check (and as root, install) Postgres and Node.js; download Go modules
	@./localstack/ensure-tools.sh
	@$(GO) mod download

build: tools ## build bin/tailor
	@$(GO) build -o $(BIN) ./cmd/tailor

demo: build ## start the local stack, seed sample data and run a campaign end to end
	@$(BIN) dev up
	@$(BIN) migrate
	@$(BIN) demo
	@echo "The local stack is still running: try '$(BIN) campaign list', then '$(BIN) dev down'."

test: build ## run the whole test suite against a local stack it starts and stops
	@$(BIN) --dir "$(TEST_STACK)" dev down >/dev/null 2>&1 || true
	@$(BIN) --dir "$(TEST_STACK)" dev up >/dev/null
	@trap '$(BIN) --dir "$(TEST_STACK)" dev down >/dev/null' EXIT; \
	  TAILOR_TEST_DIR="$(TEST_STACK)" $(GO) test -count=1 -timeout 25m ./... ; \
	  for f in $(FUZZ); do \
	    echo "fuzz $${f#*:} for $(FUZZTIME)"; \
	    TAILOR_TEST_DIR="$(TEST_STACK)" $(GO) test -run '^$$' -fuzz "^$${f#*:}$$" -fuzztime $(FUZZTIME) "$${f%%:*}" >"$(TEST_STACK).fuzz.log" 2>&1 || { \
	      echo "fuzz $${f#*:} failed; what it found (the input is kept under $${f%%:*}/testdata/fuzz/$${f#*:}):" >&2; \
	      grep -v '^fuzz: elapsed' "$(TEST_STACK).fuzz.log" | tail -40 >&2; \
	      for c in "$${f%%:*}"/testdata/fuzz/"$${f#*:}"/*; do [ -f "$$c" ] && { echo "--- $$c" >&2; head -c 4000 "$$c" >&2; echo >&2; }; done; \
	      exit 1; }; \
	  done

unit: ## run only the tests that need no local stack (go test -short)
	@$(GO) test -short -count=1 ./...

bench: build ## run the benchmarks and write BENCHMARKS.md and bench/results.json
	@mkdir -p bench
	@$(BIN) --dir "$(TEST_STACK)" dev down >/dev/null 2>&1 || true
	@$(BIN) --dir "$(TEST_STACK)" dev up >/dev/null
	@trap '$(BIN) --dir "$(TEST_STACK)" dev down >/dev/null' EXIT; \
	  TAILOR_TEST_DIR="$(TEST_STACK)" $(GO) test -run '^$$' -bench . -benchmem -cpu 1 -timeout 30m ./... | tee bench/raw.txt
	@$(GO) run ./internal/benchreport -in bench/raw.txt -md BENCHMARKS.md -json bench/results.json
	@echo "wrote BENCHMARKS.md and bench/results.json"

chaos: build ## the fault matrix over a multi-process cluster on its own stack (exit 1 on a violation)
	@$(BIN) --dir "$(CHAOS_STACK)" dev down >/dev/null 2>&1 || true
	@$(BIN) --dir "$(CHAOS_STACK)" dev up >/dev/null
	@trap '$(BIN) --dir "$(CHAOS_STACK)" dev down >/dev/null' EXIT; \
	  $(BIN) dev chaos --dir "$(CHAOS_STACK)" $(if $(SEED),--seed $(SEED))

lint: ## gofmt, go vet and staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	@$(GO) vet ./...
	@$(GO) run $(STATICCHECK) ./...

clean: ## stop local stacks and remove build output and stack data
	@[ -x $(BIN) ] && $(BIN) --dir "$(TEST_STACK)" dev down >/dev/null 2>&1 || true
	@[ -x $(BIN) ] && $(BIN) --dir "$(CHAOS_STACK)" dev down >/dev/null 2>&1 || true
	@[ -x $(BIN) ] && $(BIN) dev down >/dev/null 2>&1 || true
	@rm -rf bin .tailor bench/raw.txt

docs: ## regenerate the README's CLI reference and event schema from --help
	@$(GO) test ./cmd/tailor -run TestREADME_CLIReferenceIsCurrent -update -count=1 >/dev/null
	@echo "README.md CLI reference updated"
