# Every Go target runs over all modules listed in go.work.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

export PATH := $(PATH):/usr/local/go/bin
GO ?= go
# Package patterns and directories of every workspace module (evaluated only by targets that need them).
MODULES = $(shell $(GO) list -m -f '{{.Path}}/...')
MODULE_DIRS = $(shell $(GO) list -m -f '{{.Dir}}')
# Per test binary. The slowest package (services/aggregator/internal/chstore) takes about 5.5 minutes on an
# idle 2-core machine; the limit leaves room for a machine shared with other work, and still ends a hang.
TEST_TIMEOUT ?= 20m
TEST_FLAGS ?=
DEVENV = $(GO) run ./libs/testenv/devenv/cmd/devenv
# golangci-lint is pinned and built with `go install` into the Go bin directory under a versioned name, so a
# machine builds it once (about 2.5 minutes) and every checkout on it reuses that build.
GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT = $(shell $(GO) env GOPATH)/bin/golangci-lint-$(GOLANGCI_LINT_VERSION)

.PHONY: help
help: ## Show the targets
	@echo "usage: make <target>"
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: deps
deps: ## Install the local servers the tests need (ClickHouse, PostgreSQL); apt-get as root
	@libs/testenv/devenv/install.sh

.PHONY: test
test: deps vet ## Vet and test every module against the real local servers
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) $(TEST_FLAGS) $(MODULES)

.PHONY: vet
vet: ## go vet every module
	$(GO) vet $(MODULES)

.PHONY: bench
bench: deps ## Run the benchmarks of every module
	$(GO) test -run '^$$' -bench . -benchmem -timeout $(TEST_TIMEOUT) $(MODULES)

.PHONY: lint
lint: vet tools ## Check formatting (gofmt -l must be empty), vet and golangci-lint (.golangci.yml)
	@out="$$(gofmt -l $(MODULE_DIRS))"; if [[ -n "$$out" ]]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GOLANGCI_LINT) run --allow-serial-runners $(addsuffix /...,$(MODULE_DIRS))

.PHONY: tools
tools: ## Build the pinned golangci-lint if this machine does not have it yet
	@if [[ ! -x "$(GOLANGCI_LINT)" ]]; then \
		echo "building golangci-lint $(GOLANGCI_LINT_VERSION)"; \
		tmp="$$(mktemp -d)"; trap 'rm -rf "$$tmp"' EXIT; \
		GOBIN="$$tmp" GOWORK=off $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION); \
		mkdir -p "$$(dirname "$(GOLANGCI_LINT)")"; mv "$$tmp/golangci-lint" "$(GOLANGCI_LINT)"; \
	fi

.PHONY: fmt
fmt: ## Format every module with gofmt
	gofmt -w $(MODULE_DIRS)

.PHONY: generate
generate: ## Run go generate in every module
	$(GO) generate $(MODULES)

.PHONY: demo
demo: deps ## Run every service and an embedded Kafka in one process (state in .dev/)
	DEV_DIR=.dev $(GO) run ./services/devstack

.PHONY: up
up: ## Start the docker compose stack (real Kafka, ClickHouse, PostgreSQL)
	docker compose -f docker-compose.yml up -d

.PHONY: down
down: ## Stop the docker compose stack
	docker compose -f docker-compose.yml down

.PHONY: servers-up
servers-up: deps ## Start (or reuse) the private test PostgreSQL and ClickHouse; prints export lines
	@$(DEVENV) up

.PHONY: servers-status
servers-status: ## Show the private test servers
	@$(DEVENV) status

.PHONY: servers-down
servers-down: ## Stop the private test servers
	@$(DEVENV) down
