GO ?= go
PKGS := ./...

.PHONY: test test-race lint vet fmt bench run demo build loadgen

## test: the whole test suite (the command CI runs)
test:
	$(GO) test -count=1 $(PKGS)

## test-race: the suite under the race detector
test-race:
	$(GO) test -race -count=1 $(PKGS)

vet:
	$(GO) vet $(PKGS)

## lint: golangci-lint v2 (installed on demand)
lint:
	@command -v golangci-lint >/dev/null || $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0
	golangci-lint run $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

## bench: stage benchmarks
bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

build:
	$(GO) build -o bin/herald ./cmd/herald

## run: serve on the embedded default (SQLite file herald.db, sandbox providers)
run:
	$(GO) run ./cmd/herald serve

## loadgen: a load test on the embedded default (JSON summary, HTML report)
loadgen:
	$(GO) run ./cmd/herald loadgen --db sqlite://loadgen.db --rate max --events 20000 --json --report loadgen.html

## demo: the end-to-end demo on the embedded default
demo:
	$(GO) run ./cmd/herald demo --events 500
