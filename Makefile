# mcpgate — the two commands that matter: `make run` (local stack) and `make test` (everything).
SHELL := /bin/bash
GO ?= go
MODULES := functionapp gateway e2e
STATICCHECK_VERSION := v0.8.2
BIN := $(CURDIR)/bin
# Seconds of fuzzing per target in `make test` (CI runs each target briefly).
FUZZTIME ?= 5s

.PHONY: help run test deps npm lint fmt vet staticcheck unit fuzz build functionapp-package bench clean

help: ## show this help
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  %-20s %s\n",$$1,$$2}'

run: build ## start the local stack (function app + gateway) in the foreground; Ctrl-C stops it
	@./scripts/run-local.sh

build: ## build the binaries into ./bin
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/handler ./functionapp/cmd/handler
	$(GO) build -o $(BIN)/mcpgate ./gateway/cmd/mcpgate

test: npm lint unit fuzz ## run every check and test (what CI runs)

deps: ## install system packages the tests need (Debian: redis-server, chromium) and the npm tools
	@./scripts/install-deps.sh

npm: e2e/node_modules/.package-lock.json

e2e/node_modules/.package-lock.json: e2e/package.json e2e/package-lock.json
	cd e2e && npm ci --no-audit --no-fund --loglevel=error

lint: fmt vet staticcheck ## gofmt, go vet and staticcheck on every module

fmt:
	@out=$$(gofmt -l $(MODULES)); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	@for m in $(MODULES); do (cd $$m && $(GO) vet ./...) || exit 1; done

staticcheck: $(BIN)/staticcheck
	@for m in $(MODULES); do (cd $$m && $(BIN)/staticcheck ./...) || exit 1; done

$(BIN)/staticcheck:
	@mkdir -p $(BIN)
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

unit: ## go test on every module (unit and end-to-end tests)
	@for m in $(MODULES); do (cd $$m && $(GO) test -count=1 -timeout 20m ./...) || exit 1; done

fuzz: ## run every fuzz target for $(FUZZTIME)
	@./scripts/fuzz-all.sh $(FUZZTIME)

functionapp-package: ## build the Flex Consumption deployable folder in functionapp/dist
	@./scripts/package-functionapp.sh functionapp/dist

bench: ## run the Go benchmarks
	@for m in $(MODULES); do (cd $$m && $(GO) test -run '^$$' -bench . -benchmem ./...) || exit 1; done

clean: ## remove build output (keeps .mcpgate local state)
	rm -rf $(BIN) functionapp/dist
