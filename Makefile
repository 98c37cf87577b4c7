# agentd developer targets. Everything runs through the packages in node_modules; `npm ci` installs them.
.PHONY: install generate check-generated lint breaking typecheck build test bench serve clean

BIN := node_modules/.bin

install: node_modules/.package-lock.json

node_modules/.package-lock.json: package-lock.json package.json
	npm ci --no-audit --no-fund
	@touch $@

# TypeScript stubs (ts-proto) and the embedded descriptor set used by server reflection.
generate: install
	$(BIN)/buf generate
	$(BIN)/buf build -o - | node scripts/embed-descriptors.mjs > src/gen/descriptor_set.ts

# Fails when src/gen differs from what `make generate` produces.
check-generated: generate
	@git diff --exit-code --stat -- src/gen || (echo "src/gen is out of date: run 'make generate' and commit it" && exit 1)
	@test -z "$$(git status --porcelain -- src/gen)" || (git status --porcelain -- src/gen; echo "untracked files in src/gen: run 'make generate' and commit them"; exit 1)

lint: install
	$(BIN)/buf lint

# Compares the contract with main's; run it before changing a .proto on a branch.
breaking: install
	$(BIN)/buf breaking --against '.git#branch=main'

typecheck: install
	$(BIN)/tsc --noEmit -p tsconfig.json

build: install
	$(BIN)/tsc -p tsconfig.build.json

# scripts/test-deps.sh installs the Debian packages a few tests need (Python client, browser) when missing.
test: install
	scripts/test-deps.sh
	$(BIN)/vitest run

bench: install
	$(BIN)/tsx bench/run.ts

# Starts the server on its embedded defaults: 127.0.0.1:50051, data under ./.agentd; more flags with
# ARGS="--port 0 --store memory". `exec` makes the server itself make's child (no shell or tsx
# process in between), so Ctrl-C and a SIGTERM sent to make reach it and it shuts down gracefully.
serve: install
	exec bin/agentd serve $(ARGS)

clean:
	rm -rf dist
