# Two commands do everything on a fresh machine that has Python 3.11+:
#   make test   uv, .venv from uv.lock, ruff, mypy, pytest (no Pulumi CLI, no AWS needed)
#   make up     the same .venv, pre-flight checks, `pulumi up` on the upstream stack, then the downstream
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

# uv installs .venv (and policy/venv) exactly as uv.lock (policy/uv.lock) says. Its version is
# pinned here and nowhere else. A uv on PATH at this version is used as it is; otherwise make
# installs this version from PyPI into .tools/, so a fresh machine needs nothing but Python:
# pip checks the wheel against the sha256 that $(UV_HASHES) holds for it (`make uv-hashes`
# writes that file for this version).
UV_VERSION := 0.13.9
UV_HASHES := requirements-uv.txt
UV_HOME := .tools/uv-$(UV_VERSION)
ifeq ($(shell uv --version 2>/dev/null | cut -d' ' -f2),$(UV_VERSION))
UV := $(shell command -v uv)
else
UV := $(CURDIR)/$(UV_HOME)/bin/uv
endif
# Pulumi runs uv itself (toolchain: uv in Pulumi.yaml and policy/PulumiPolicy.yaml): this one.
export PATH := $(dir $(UV)):$(PATH)

# State: Pulumi.yaml's `backend.url` (the folder .pulumi-state), for every pulumi command alike,
# unless PULUMI_BACKEND_URL points elsewhere (S3, Pulumi Cloud). No default is exported here.
UPSTREAM_STACK ?= upstream
DOWNSTREAM_STACK ?= downstream

.PHONY: test lint typecheck unit install up preview verify ci-roles clean lock uv-dir uv-hashes plan

POLICY_INSTALLED := policy/venv/.installed

# uv's wheel holds the whole program: pip only unpacks it, no venv needed. --require-hashes: a
# wheel whose sha256 is not in $(UV_HASHES) is refused; --only-binary: never a build from source.
$(CURDIR)/$(UV_HOME)/bin/uv: $(UV_HASHES)
	@grep -qxF 'uv==$(UV_VERSION) \' $(UV_HASHES) || { echo "$(UV_HASHES) is not for uv $(UV_VERSION): run make uv-hashes" >&2; exit 1; }
	rm -rf $(UV_HOME)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --no-deps --only-binary=:all: --require-hashes --target $(UV_HOME) -r $(UV_HASHES)

# After changing UV_VERSION: the sha256 of each of that version's wheels, from PyPI.
uv-hashes:
	$(PYTHON) -m scripts.uv_hashes $(UV_VERSION) > $(UV_HASHES).tmp
	mv $(UV_HASHES).tmp $(UV_HASHES)

# The project's dependencies and the dev group, from uv.lock. --locked: stop if pyproject.toml
# and uv.lock disagree, rather than resolve anew.
$(INSTALLED): pyproject.toml uv.lock | $(UV)
	UV_PROJECT_ENVIRONMENT=$(CURDIR)/$(VENV) $(UV) sync --locked --python $(PYTHON)
	touch $@

# The policy pack (policy/) runs in its own environment, as PulumiPolicy.yaml says.
$(POLICY_INSTALLED): policy/pyproject.toml policy/uv.lock | $(UV)
	UV_PROJECT_ENVIRONMENT=$(CURDIR)/policy/venv $(UV) sync --locked --python $(PYTHON) --directory policy
	touch $@

# Everything `pulumi preview/up --policy-pack policy` needs (CI's deploy jobs run this).
install: $(INSTALLED) $(POLICY_INSTALLED)

# After changing a dependency in pyproject.toml or policy/pyproject.toml: update the locks.
lock: | $(UV)
	$(UV) lock --python $(PYTHON)
	$(UV) lock --python $(PYTHON) --directory policy
	$(UV) lock --python $(PYTHON) --directory provider

# Where the uv that make uses lives, for PATH: Pulumi runs uv (CI: make -s uv-dir >> "$GITHUB_PATH").
uv-dir:
	@echo $(dir $(UV))

test: lint typecheck unit

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/actionlint -shellcheck=$(BIN)/shellcheck
	$(BIN)/zizmor --offline --min-severity=medium --no-progress --quiet .

typecheck: $(INSTALLED)
	$(BIN)/mypy

# On every core, at most 4 (pytest-xdist); `.venv/bin/pytest tests/<file>` runs one file alone.
unit: $(INSTALLED)
	$(BIN)/pytest -n auto --maxprocesses 4

up: install
	$(BIN)/python -m scripts.deploy up --upstream-stack $(UPSTREAM_STACK) --downstream-stack $(DOWNSTREAM_STACK)

preview: install
	$(BIN)/python -m scripts.deploy preview --upstream-stack $(UPSTREAM_STACK) --downstream-stack $(DOWNSTREAM_STACK)

# After `make up`: ask ECR whether each rule of the downstream stack works.
verify: $(INSTALLED)
	$(BIN)/python -m scripts.verify --stack $(DOWNSTREAM_STACK)

# Before the first `make up` over rules, templates or a registry policy that already exist (made by
# hand or by CloudFormation): what each stack would manage and what of it exists, read with that
# stack's credentials (UPSTREAM_AWS_PROFILE / DOWNSTREAM_AWS_PROFILE), and one `pulumi import
# --file` file per stack, adopt-<stack>.json (README "Adopt what exists"). Reads only; changes
# nothing. STACK=<name> for one stack (OUTPUT=<file> with it); default: the upstream and the
# downstream stack. Exit status 0 written, 1 stack refused, 2 could not check.
.PHONY: adopt
adopt: $(INSTALLED)
	$(BIN)/python -m scripts.adopt $(if $(STACK),--stack $(STACK),--stack $(UPSTREAM_STACK) --stack $(DOWNSTREAM_STACK)) $(if $(OUTPUT),--output $(OUTPUT))

# After `make up`: every link of the downstream stack's pull-through-cache chain, asked of AWS
# (README "Day two: make doctor"). DOWNSTREAM_AWS_PROFILE, and UPSTREAM_AWS_PROFILE for the
# upstream's links (unset: UNKNOWN). IMAGE=<repo:tag> adds a canary pull through the cache;
# DOCTOR_JSON=<file> also writes the links as JSON. The doctor reads IMAGE and DOCTOR_JSON from
# its environment (make exports them), so no value is ever expanded in a recipe. Exit status 0
# healthy, 1 broken, 2 could not check.
.PHONY: doctor destroy
doctor: $(INSTALLED)
	$(BIN)/python -m scripts.doctor --stack $(DOWNSTREAM_STACK)

# Tear down in order (README "Day two: tear down"): the downstream stack, then the member stacks
# of its fleet (TEMPLATE, only when given: the default must not take fleet `downstream`'s
# members along with DOWNSTREAM_STACK=downstream-eu), then, only with CONFIRM=<upstream account
# ID>, the upstream stack. YES=1 answers the one question for the downstream side. Stacks, cache
# repositories and the registry policy scope setting stay. No policy pack and no program run.
destroy: $(INSTALLED)
	$(BIN)/python -m scripts.destroy --upstream-stack $(UPSTREAM_STACK) --downstream-stack $(DOWNSTREAM_STACK) $(if $(filter command line environment,$(origin TEMPLATE)),--template $(TEMPLATE))

# The IAM policies and GitHub OIDC trust policies of CI's four roles: GITHUB_REPOSITORY=owner/repo.
ci-roles: $(INSTALLED)
	$(BIN)/python -m scripts.ci_roles --upstream-stack $(UPSTREAM_STACK) --downstream-stack $(DOWNSTREAM_STACK)

# Tools, environments and caches only. Never the state (.pulumi-state): removing it would
# orphan everything deployed.
clean:
	rm -rf $(VENV) policy/venv .tools .mypy_cache .ruff_cache .pytest_cache

# --- Fleets: one downstream stack per account of a template (README "Fleet") ---------------
# TEMPLATE is the template stack; MEMBERS=<file> uses a members list from `make fleet-members`
# instead of deriving it again (CI: every batch sees the same list). Environment: BATCH=i/N,
# FLEET_PARALLELISM=<n>, FLEET_SUMMARY=<file>; for fleet-up also CANARY, WAVE_SIZE,
# FAILURE_TOLERANCE, REFRESH=1, PRUNE=1, PRUNE_MAX, PRUNE_CONFIRM=<count>, FLEET_GRACE_SECONDS,
# FLEET_UPSTREAM=check (only check the upstream stack instead of deploying it first).
TEMPLATE ?= downstream
PER_BATCH ?= 25
FLEET_ARGS = --template $(TEMPLATE) $(if $(MEMBERS),--members $(MEMBERS))

.PHONY: fleet-members fleet-matrix fleet-preview fleet-up fleet-drift fleet-comment bench-fleet

# JSON on stdout only (`make -s fleet-members > members.json`).
fleet-members: $(INSTALLED)
	@$(BIN)/python -m scripts.fleet members $(FLEET_ARGS)

fleet-matrix: $(INSTALLED)
	@$(BIN)/python -m scripts.fleet matrix $(FLEET_ARGS) --per-batch $(PER_BATCH)

fleet-preview: install
	$(BIN)/python -m scripts.fleet preview $(FLEET_ARGS)

# The upstream stack first (as make up: its pre-flight, then `pulumi up`), then the members.
fleet-up: install
	$(BIN)/python -m scripts.fleet up $(FLEET_ARGS) --upstream-stack $(UPSTREAM_STACK)

# Each member's `pulumi refresh --preview-only` (its read-only role): what changed outside Pulumi.
fleet-drift: install
	$(BIN)/python -m scripts.fleet drift $(FLEET_ARGS)

# make doctor for every member of TEMPLATE, in parallel (DOCTOR_PARALLELISM, default 8), each
# through its read-only preview role; one table (IMAGE, DOCTOR_JSON and UPSTREAM_AWS_PROFILE as
# for make doctor; with GITHUB_STEP_SUMMARY set, the table also goes to the job summary).
.PHONY: fleet-doctor
fleet-doctor: $(INSTALLED)
	$(BIN)/python -m scripts.doctor_fleet $(FLEET_ARGS)

# The driver's own overhead for 10, 100 and 1,000 members (no Pulumi CLI, no AWS).
bench-fleet: $(INSTALLED)
	$(BIN)/python -m scripts.bench_fleet

# CI: one PR comment from the batches' FLEET_SUMMARY files (SUMMARIES=<files>).
fleet-comment: $(INSTALLED)
	@$(BIN)/python -m scripts.fleet comment $(SUMMARIES)

# What each stack file would create: every resource and policy, offline (no AWS, no Pulumi CLI).
# STACKS="upstream downstream" limits it; JSON=1 prints JSON.
plan: $(INSTALLED)
	@$(BIN)/python -m scripts.plan $(if $(JSON),--json) $(STACKS)

# --- The component package (provider/, README "Use it from your own program") -----------------
.PHONY: schema

# After a deliberate change of the components' arguments or outputs: regenerate the package's
# schema (tests/test_package.py fails until provider/schema.json matches the components).
schema: $(INSTALLED)
	$(BIN)/python -m provider.package > provider/schema.json.tmp
	mv provider/schema.json.tmp provider/schema.json

# --- Checks and measurements of the config itself ------------------------------------
.PHONY: config-schema bench

# The JSON Schema editors check stack files with (their first line names it); generated from
# components/inputs/stack_config.py, and a test fails when the checked-in file is stale.
config-schema: $(INSTALLED)
	$(BIN)/python -m components.inputs.json_schema > schema/stack-config.schema.json.tmp
	mv schema/stack-config.schema.json.tmp schema/stack-config.schema.json

# Quota headroom (how many rules fit, policy sizes at 50 rules) and the mocked program's
# evaluation time, then the fleet driver's overhead. Timings stay out of `make test`.
bench: $(INSTALLED)
	$(BIN)/python -m scripts.bench
