# Two commands do everything on a fresh machine:
#   make test   venv, install, ruff, mypy, pytest (no Pulumi CLI, no AWS needed)
#   make up     venv, pre-flight checks, `pulumi up` on the upstream stack, then the downstream
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

# State: Pulumi.yaml's `backend.url` (the folder .pulumi-state), for every pulumi command alike,
# unless PULUMI_BACKEND_URL points elsewhere (S3, Pulumi Cloud). No default is exported here.
UPSTREAM_STACK ?= upstream
DOWNSTREAM_STACK ?= downstream

.PHONY: test lint typecheck unit install up preview verify ci-roles clean

POLICY_INSTALLED := policy/venv/.installed

$(INSTALLED): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# The policy pack (policy/) runs in its own environment, as PulumiPolicy.yaml says.
$(POLICY_INSTALLED): policy/requirements.txt
	$(PYTHON) -m venv policy/venv
	policy/venv/bin/pip install --quiet --disable-pip-version-check -r policy/requirements.txt
	touch $@

# Everything `pulumi preview/up --policy-pack policy` needs (CI's deploy jobs run this).
install: $(INSTALLED) $(POLICY_INSTALLED)

test: lint typecheck unit

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/actionlint

typecheck: $(INSTALLED)
	$(BIN)/mypy

unit: $(INSTALLED)
	$(BIN)/pytest

up: install
	$(BIN)/python -m scripts.deploy up --upstream-stack $(UPSTREAM_STACK) --downstream-stack $(DOWNSTREAM_STACK)

preview: install
	$(BIN)/python -m scripts.deploy preview --upstream-stack $(UPSTREAM_STACK) --downstream-stack $(DOWNSTREAM_STACK)

# After `make up`: ask ECR whether each rule of the downstream stack works.
verify: $(INSTALLED)
	$(BIN)/python -m scripts.verify --stack $(DOWNSTREAM_STACK)

# The IAM policies and GitHub OIDC trust policies of CI's four roles: GITHUB_REPOSITORY=owner/repo.
ci-roles: $(INSTALLED)
	$(BIN)/python -m scripts.ci_roles --upstream-stack $(UPSTREAM_STACK) --downstream-stack $(DOWNSTREAM_STACK)

# Never the state (.pulumi-state): removing it would orphan everything deployed.
clean:
	rm -rf $(VENV) policy/venv .mypy_cache .ruff_cache .pytest_cache
