# Foundry Gateway. `make run` starts a working gateway on localhost;
# `make test` runs every test tier. `make help` lists the targets.

GO        ?= go
TOOLS     := .tools
AZURITE_VERSION := 3.37.0
AZURITE   := $(TOOLS)/node_modules/.bin/azurite-table
BIN       := bin/handler
LOCAL_CONFIG := infra/config/local.yaml
GATEWAY_ADDR := 127.0.0.1:8080
SIM_ADDR  := 127.0.0.1:8081
# VERSION is stamped into the binary (handler version, /healthz, the startup log).
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT    ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS   := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

.DEFAULT_GOAL := help
.PHONY: help build run test test-unit fuzz bench tools chromium package funcapp deploy lint clean screenshot ledger-scale

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## build bin/handler
	$(GO) build -ldflags='$(LDFLAGS)' -o $(BIN) .

tools: $(AZURITE) ## install what the tests need (Azurite from npm into .tools/)

$(AZURITE):
	mkdir -p $(TOOLS)
	npm install --prefix $(TOOLS) --no-audit --no-fund --loglevel=error --save-exact azurite@$(AZURITE_VERSION)
	@test -x $(AZURITE)

run: build ## start the simulator and the gateway on localhost, print a dev key
	@mkdir -p data
	@if curl -fs -m 2 http://$(GATEWAY_ADDR)/healthz 2>/dev/null | grep -q foundry-gateway; then \
	  echo "a gateway is already running on http://$(GATEWAY_ADDR) (stop it first; the CLI works beside it)"; exit 1; fi
	@set -e; \
	./$(BIN) sim --listen $(SIM_ADDR) & SIM=$$!; \
	trap 'kill $$SIM 2>/dev/null' EXIT INT TERM; \
	DEV=$$( [ -s data/dev-key ] && ./$(BIN) keys get --config $(LOCAL_CONFIG) --json "$$(cut -d. -f1 data/dev-key)" 2>/dev/null || true); \
	if ! echo "$$DEV" | grep -q '"status":"active"' || ! echo "$$DEV" | grep -q '"admin":true'; then \
	  ./$(BIN) keys create --config $(LOCAL_CONFIG) --team dev --app local --admin --secret-only > data/dev-key.new; \
	  mv data/dev-key.new data/dev-key; \
	fi; \
	KEY=$$(cat data/dev-key); \
	echo; echo "Foundry Gateway on http://$(GATEWAY_ADDR)  (simulator on http://$(SIM_ADDR))"; \
	echo "dev key: $$KEY"; echo; \
	echo "try:  curl -s http://$(GATEWAY_ADDR)/openai/v1/chat/completions -H \"Authorization: Bearer $$KEY\" -H 'Content-Type: application/json' -d '{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}'"; \
	echo "      add -H 'Prefer: respond-async' to queue it as a low-priority job, then GET /jobs/<id> with the same key"; \
	echo "usage page:  http://$(GATEWAY_ADDR)/gateway/admin/usage/ui?key=$$KEY    backends:  http://$(GATEWAY_ADDR)/gateway/admin/backends"; \
	echo; \
	./$(BIN) serve --config $(LOCAL_CONFIG)

test: tools chromium ## run every test: unit, store contract against Azurite, e2e with the usage page in headless Chromium (-race)
	AZURITE_TABLE_BIN=$(abspath $(AZURITE)) $(GO) test -race -count=1 -timeout 14m $$($(GO) list ./... | grep -v '/internal/deploy$$')
	@# internal/deploy zips and scans the 20 MB handler binary: single-threaded file work that takes
	@# ~200 s under the race detector and ~10 s without, so it runs without -race.
	$(GO) test -count=1 -timeout 5m ./internal/deploy/
	@# The ledger's memory bound as the RSS of a gateway process: without -race, which multiplies memory.
	$(GO) test -count=1 -timeout 5m -run '^TestGatewayLedgerRSS$$' .
	@$(GO) test -count=1 -v -run TestContract ./internal/queue/servicebus | grep -E -- '--- (SKIP|PASS|FAIL)|SKIPPED' || true
	$(GO) test -run '^$$' -bench . -benchtime 1x ./internal/... > /dev/null
	@$(MAKE) --no-print-directory fuzz

# Fuzz targets (package:function); seed corpora in each package's testdata/fuzz.
FUZZ_TARGETS := ./internal/openai:FuzzParse ./internal/jsonkey:FuzzCheck ./internal/usage:FuzzStream \
	./internal/config:FuzzParse ./internal/callback:FuzzCheck
FUZZTIME ?= 3s

fuzz: ## run each fuzz target for FUZZTIME (default 3s; request parser, duplicate keys, SSE usage, config, callback URLs)
	@set -e; for t in $(FUZZ_TARGETS); do \
	  echo "fuzz $${t##*:} $${t%%:*} ($(FUZZTIME))"; \
	  $(GO) test -run '^$$' -fuzz "^$${t##*:}$$" -fuzztime $(FUZZTIME) $${t%%:*} > /tmp/fuzz.$$$$.log 2>&1 || { cat /tmp/fuzz.$$$$.log; rm -f /tmp/fuzz.$$$$.log; exit 1; }; \
	done; rm -f /tmp/fuzz.$$$$.log

test-unit: ## unit tests only (no Azurite)
	$(GO) test -race -count=1 -short ./internal/... ./handlers/...

bench: build ## benchmarks: load test direct vs bare proxy vs gateway, the side-by-side table of ../shared/bench, micro-benchmarks
	$(GO) run ./test/loadbench --handler $(BIN)
	test/loadbench/peers.sh $(BIN)
	$(GO) test -run '^$$' -bench . -benchmem ./internal/...

DEPLOYMENT ?= foundry-gateway

package: ## build build/gateway.zip for Azure Functions (linux/amd64, static) and check it
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags='-s -w $(LDFLAGS)' -o build/linux/handler .
	$(GO) run . package --out build/gateway.zip --binary build/linux/handler --gateway-config infra/config/azure.yaml

FUNCAPP := build/funcapp

funcapp: ## lay out build/funcapp for Core Tools: then `cd build/funcapp && func start` (README)
	mkdir -p $(FUNCAPP)/infra/config
	CGO_ENABLED=0 $(GO) build -o $(FUNCAPP)/handler .
	cp host.json $(FUNCAPP)/host.json
	@set -e; for d in functions/*/; do n=$$(basename $$d); mkdir -p $(FUNCAPP)/$$n; cp $$d/function.json $(FUNCAPP)/$$n/function.json; done
	cp infra/config/functions-local.yaml $(FUNCAPP)/infra/config/functions-local.yaml
	@if [ -f local.settings.json ]; then cp local.settings.json $(FUNCAPP)/; else cp local.settings.sample.json $(FUNCAPP)/local.settings.json; fi
	@echo "$(FUNCAPP) ready: start Azurite ($(AZURITE) --location data/azurite) and the simulator (bin/handler sim --listen $(SIM_ADDR)), then: cd $(FUNCAPP) && func start"

deploy: package ## deploy infra/main.bicep and build/gateway.zip (RESOURCE_GROUP=..., PARAMS=...; see README)
	@test -n "$(RESOURCE_GROUP)" || (echo "set RESOURCE_GROUP (and PARAMS=infra/main.parameters.json)"; exit 2)
	az deployment group create --resource-group $(RESOURCE_GROUP) --name $(DEPLOYMENT) \
	  --template-file infra/main.bicep --parameters @$(or $(PARAMS),infra/main.parameters.json) \
	  --query properties.outputs -o json > build/deploy-outputs.json
	@set -e; \
	out() { az deployment group show --resource-group $(RESOURCE_GROUP) --name $(DEPLOYMENT) --query "properties.outputs.$$1.value" -o tsv; }; \
	APP=$$(out functionAppName); \
	if [ "$$(out hostingPlan)" = FlexConsumption ]; then \
	  az functionapp deploy --resource-group $(RESOURCE_GROUP) --name $$APP --src-path build/gateway.zip --type zip; \
	else \
	  az storage blob upload --auth-mode login --account-name $$(out storageAccountName) \
	    --container-name $$(out deploymentContainerName) --name gateway.zip --file build/gateway.zip --overwrite; \
	  az functionapp restart --resource-group $(RESOURCE_GROUP) --name $$APP; \
	  az resource invoke-action --action syncfunctiontriggers \
	    --ids $$(az functionapp show --resource-group $(RESOURCE_GROUP) --name $$APP --query id -o tsv); \
	fi; \
	echo "gateway: $$(out gatewayUrl)"

lint: ## go vet and gofmt
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)

clean: ## remove build output and local data
	rm -rf bin build data

ledger-scale: ## 1,000,000 usage events for one day in a running gateway: record, rollup, report, rebuild under 64 MiB of RSS
	FGW_LEDGER_EVENTS=1000000 $(GO) test -count=1 -timeout 90m -run '^TestGatewayLedgerRSS$$' -v .
	FGW_LEDGER_EVENTS=1000000 $(GO) test -count=1 -timeout 30m -run '^TestLedgerMemoryAtScale$$' -v ./internal/ledger/

# Debian's chromium for TestUsagePageScreenshot (part of `make test`): installed once, outside the
# tests' timing (~2.5 min here: apt-get install -y chromium, 06:21:36-06:24:02 in /var/log/apt/history.log).
chromium: ## install headless Chromium (Debian package) when missing: the usage page test needs it
	@command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

screenshot: tools chromium ## headless Chromium screenshot of the usage page with data (build/usage-ui.png)
	AZURITE_TABLE_BIN=$(abspath $(AZURITE)) $(GO) test -count=1 -run '^TestUsagePageScreenshot$$' -v ./test/
