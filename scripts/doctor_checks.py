"""The links of the pull-through-cache chain that `make doctor` checks, each asked of AWS.

What should exist comes in as an `Expected` (scripts/doctor.py derives it from the stack's
offline plan); what exists is asked with boto3 clients, one `ClientFor` per side (downstream
credentials, and the upstream's when given). Every link ends as one `Link`: `ok`, `BROKEN`
with its cause and fix, or `UNKNOWN` with why it could not be checked. A refused or failed call
makes its link UNKNOWN, never BROKEN: only an answer from AWS can show a link broken.

The action lists are the program's own (components/plan/policies.py and
components/rules/policy_rules.py); the only lists kept here are the AWS actions the doctor
itself calls, so that CI's read-only roles can be granted exactly them.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from components.plan.policies import (
    CACHE_WRITE_ACTIONS,
    CONSUMER_PULL_ACTIONS,
    CONSUMER_TAG_ACTION,
    GRANT_FOR_AWS_RESOURCE,
    REGISTRY_LOGIN_ACTION,
    TEMPLATE_KMS_ACTIONS,
    TEMPLATE_KMS_GRANT_ACTION,
)
from components.plan.stack_plan import APPLIED_FOR
from components.rules.aws_names import ROOT_PREFIX, repositories_under, repository_arn_in
from components.rules.policy_rules import (
    CACHE_READ_ACTIONS,
    ECR_SERVICE,
    PULL_THROUGH_CACHE_SERVICE,
    repository_glob,
)
from scripts.ci_roles import REGISTRY_POLICY_SCOPE
from scripts.deploy import credential_problem
from scripts.doctor_policies import (
    BROKEN,
    OK,
    UNKNOWN,
    Denial,
    GrantFinding,
    denials_text,
    grant_finding,
    policy_document_of,
    region_context,
    simulate,
    statements_of,
    trust_verdict,
)

# --- what the doctor itself calls (tests/test_doctor.py checks them with policy_sentry) ---------

# With the downstream account's credentials: reads only.
DOCTOR_READ_ACTIONS = (
    "ecr:DescribePullThroughCacheRules",
    "ecr:DescribeRepositoryCreationTemplates",
    "ecr:ValidatePullThroughCacheRule",
    "iam:GetRole",
    "iam:SimulatePrincipalPolicy",
    # Only when the upstream grants by organization: which organization this account is in.
    "organizations:DescribeOrganization",
    "sts:GetCallerIdentity",
)
# With the upstream account's credentials: reads only.
DOCTOR_UPSTREAM_READ_ACTIONS = (
    "ecr:GetAccountSetting",
    "ecr:GetRegistryPolicy",
    "ecr:GetRepositoryPolicy",
    "sts:GetCallerIdentity",
)
# IMAGE=<repo:tag> only. A canary pull through the cache is a pull: on the cache repositories it
# imports the image and, the first time, creates the repository, as any puller's pull does.
DOCTOR_CANARY_ACTIONS = (
    "ecr:BatchGetImage",
    "ecr:BatchImportUpstreamImage",
    "ecr:CreateRepository",
)
# IMAGE only, upstream credentials: the upstream's digest of the tag.
DOCTOR_UPSTREAM_CANARY_ACTIONS = ("ecr:DescribeImages",)

NOT_CHECKED = "not checked: "
NOT_CHECKED_DOWNSTREAM = f"{NOT_CHECKED}the downstream credentials are not usable for this stack"
# What ECR needs from a template's role to create a cache repository (tags: also TagResource).
CREATE_REPOSITORY = "ecr:CreateRepository"
# The repository name the simulations ask about, inside each namespace (`golden/*` ->
# `golden/ecr-ptc-doctor-probe`): IAM's simulator evaluates concrete ARNs.
PROBE_REPOSITORY = "ecr-ptc-doctor-probe"
# Media types the canary accepts, so ECR returns the manifest as stored (its digest unchanged).
MANIFEST_MEDIA_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
_ACCESS_DENIED = frozenset(
    {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedException"}
)
_CREDENTIAL_ERRORS = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
        "InvalidToken",
    }
)

ClientFor = Callable[[str, str], Any]  # (service, region) -> a boto3 client


@dataclass(frozen=True)
class Link:
    name: str
    status: str  # OK, BROKEN or UNKNOWN
    detail: str = ""

    def line(self, width: int = 0) -> str:
        if self.status == OK:
            verdict = OK + (f" ({self.detail})" if self.detail else "")
        else:
            verdict = f"{self.status}: {self.detail}"
        return f"{self.name:<{width}} {verdict}"

    def to_json(self) -> dict[str, str]:
        return {"link": self.name, "status": self.status, "detail": self.detail}


@dataclass(frozen=True)
class ExpectedRule:
    region: str
    ecr_repository_prefix: str
    upstream_repository_prefix: str


@dataclass(frozen=True)
class Expected:
    """What the stack's plan says exists (scripts/doctor.py builds it from config)."""

    stack: str
    account_id: str
    partition: str
    home_region: str  # the stack's aws:region: STS, IAM and Organizations are asked there
    regions: tuple[str, ...]
    rules: tuple[ExpectedRule, ...]  # every rule in every region
    upstream_account_id: str
    upstream_region: str
    upstream_registry_url: str
    # The upstream repository ARN patterns the cache role reads (`…:repository/golden/*`).
    upstream_reads: tuple[str, ...]
    # The cache role as config names it: an existing role's ARN, or the name the stack gives
    # it; neither: Pulumi names it `<autoname_prefix><random>`.
    cache_role_arn: str | None
    cache_role_name: str | None
    cache_role_autoname_prefix: str
    # (region, prefix) of every creation template the stack creates.
    templates: tuple[tuple[str, str], ...]
    consumer_roles: tuple[str, ...]
    # The upstream grants by repository policy on these repositories; empty: registry policy.
    upstream_grant_repositories: tuple[str, ...] = ()

    @property
    def same_account(self) -> bool:
        return self.upstream_account_id == self.account_id

    def cache_arn(self, region: str, prefix: str) -> str:
        return repository_arn_in(self.partition, region, self.account_id, _under(prefix))

    def prefixes(self, region: str) -> list[str]:
        return [r.ecr_repository_prefix for r in self.rules if r.region == region]


@dataclass(frozen=True)
class Image:
    """IMAGE=<repo:tag>: a cache repository name (as pulled from the cache) and a tag."""

    repository: str
    tag: str

    def __str__(self) -> str:
        return f"{self.repository}:{self.tag}"


def parse_image(text: str) -> Image:
    """`golden/base:1.0`, or the whole pull address (its registry host is dropped)."""
    name = text.strip()
    first, _, rest = name.partition("/")
    if rest and (".dkr.ecr." in first or ":" in first):
        name = rest  # <account>.dkr.ecr.<region>.amazonaws.com/..., or a registry with a port
    repository, _, tag = name.rpartition(":")
    if not repository or not tag or "/" in tag or "@" in name:
        raise ValueError(
            f"IMAGE={text!r}: a cache repository and a tag, e.g. golden/base:1.0 (a tag, not a "
            "digest: the doctor compares the tag's digest in the cache and upstream)"
        )
    return Image(repository, tag)


def upstream_repository(rules: Sequence[ExpectedRule], repository: str) -> tuple[str, str] | None:
    """(the rule's prefix, the upstream repository) a cache repository name is filled from: the
    most specific rule whose prefix holds it, ROOT last; None when no rule does."""
    best: ExpectedRule | None = None
    for rule in rules:
        prefix = rule.ecr_repository_prefix.rstrip("/")
        if rule.ecr_repository_prefix == ROOT_PREFIX:
            if best is None:
                best = rule
        elif repository.startswith(f"{prefix}/") and (
            best is None
            or best.ecr_repository_prefix == ROOT_PREFIX
            or len(prefix) > len(best.ecr_repository_prefix.rstrip("/"))
        ):
            best = rule
    if best is None:
        return None
    rest = repository
    if best.ecr_repository_prefix != ROOT_PREFIX:
        rest = repository[len(best.ecr_repository_prefix.rstrip("/")) + 1 :]
    if best.upstream_repository_prefix == ROOT_PREFIX:
        return best.ecr_repository_prefix, rest
    return best.ecr_repository_prefix, f"{best.upstream_repository_prefix.rstrip('/')}/{rest}"


def _under(prefix: str) -> str:
    """The namespace's repositories with the probe name for the `*`."""
    return repositories_under(prefix).removesuffix("*") + PROBE_REPOSITORY


def _probe(arn_pattern: str) -> str:
    return (
        arn_pattern.removesuffix("*") + PROBE_REPOSITORY
        if arn_pattern.endswith("*")
        else arn_pattern
    )


def _role_name(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def _code(err: Exception) -> str:
    if isinstance(err, ClientError):
        return str(err.response.get("Error", {}).get("Code", ""))
    return ""


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def could_not_ask(err: Exception, action: str, who: str) -> str:
    """Why a link is UNKNOWN after a call failed: refused, bad credentials, network, other."""
    from botocore import exceptions as boto

    code = _code(err)
    if code in _ACCESS_DENIED and action == "sts:AssumeRole":
        return (
            f"{action} was refused ({code}): the role must trust the credentials that assume "
            "it, and they must be allowed to assume it (`make ci-roles`: a fleet's preview roles)"
        )
    if code in _ACCESS_DENIED:
        return (
            f"{action} was refused to the {who} credentials ({code}): grant them {action} "
            "(README: make doctor, the IAM actions it needs)"
        )
    if code in _CREDENTIAL_ERRORS or isinstance(
        err,
        boto.NoCredentialsError
        | boto.PartialCredentialsError
        | boto.ProfileNotFound
        | boto.TokenRetrievalError
        | boto.SSOError
        | boto.CredentialRetrievalError,
    ):
        return f"no usable {who} credentials for {action}: {_one_line(err)}"
    if isinstance(err, boto.ConnectionError | boto.HTTPClientError):
        return f"could not reach AWS for {action} (network, not credentials): {_one_line(err)}"
    return f"{action} failed: {_one_line(err)}"


def _paginate(call: Callable[..., Mapping[str, Any]], key: str, **params: Any) -> list[Any]:
    items: list[Any] = []
    token: str | None = None
    while True:
        page = call(**params, **({"nextToken": token} if token else {}))
        items.extend(page.get(key, []))
        token = page.get("nextToken")
        if not token:
            return items


# --- the doctor ---------------------------------------------------------------------------------


@dataclass
class Doctor:
    """Asks AWS about each link of one downstream stack's chain; `run()` gives the links."""

    expected: Expected
    downstream: ClientFor
    upstream: ClientFor | None  # None: no upstream credentials were given
    image: Image | None = None
    clock: Callable[[], float] = time.monotonic
    downstream_source: str = "DOWNSTREAM_AWS_PROFILE"
    upstream_source: str = "UPSTREAM_AWS_PROFILE"
    links: list[Link] = field(default_factory=list)
    _roles: dict[str, Any] = field(default_factory=dict)
    _live_rules: dict[str, dict[str, Any]] = field(default_factory=dict)
    _templates: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    _organization: str | None = None
    _organization_asked: bool = False
    _organization_error: str = ""

    # -- plumbing --

    def _add(self, name: str, status: str, detail: str = "") -> None:
        self.links.append(Link(name, status, detail))

    def _guarded(
        self, names: Sequence[str], action: str, who: str, check: Callable[[], None]
    ) -> None:
        """Run `check`; if AWS refuses or cannot be reached, each of `names` not yet reported is
        UNKNOWN with the reason."""
        before = {link.name for link in self.links}
        try:
            check()
        except (ClientError, BotoCoreError) as err:
            operation = getattr(err, "operation_name", "")
            service = action.split(":", 1)[0]
            asked = f"{service}:{operation}" if operation else action
            why = could_not_ask(err, asked, who)
            done = {link.name for link in self.links} - before
            for name in names:
                if name not in done:
                    self._add(name, UNKNOWN, why)

    def _iam(self) -> Any:
        return self.downstream("iam", self.expected.home_region)

    def _get_role(self, name: str) -> dict[str, Any] | None:
        if name not in self._roles:
            try:
                self._roles[name] = self._iam().get_role(RoleName=name)["Role"]
            except ClientError as err:
                if _code(err) != "NoSuchEntity":
                    raise
                self._roles[name] = None
        role: dict[str, Any] | None = self._roles[name]
        return role

    # -- link names, for links that cannot be checked at all --

    def _rule_link(self, rule: ExpectedRule) -> str:
        return f"rule {rule.ecr_repository_prefix} in {rule.region}"

    def _downstream_names(self) -> list[str]:
        e = self.expected
        names = [self._rule_link(r) for r in e.rules]
        names += ["cache role trust", "cache role permissions"]
        for region, prefix in e.templates:
            names += [
                f"template {prefix} in {region}: role",
                f"template {prefix} in {region}: tag refresh",
            ]
        names += [f"consumer {role}" for role in e.consumer_roles]
        if self.image is not None:
            names += [f"canary {self.image} in {region}" for region in e.regions]
        return names

    def _upstream_names(self) -> list[str]:
        names = ["upstream grant", "upstream policy scope"]
        if self.image is not None:
            names += [f"cached digest {self.image} in {region}" for region in self.expected.regions]
        return names

    # -- the run --

    def run(self) -> list[Link]:
        e = self.expected
        downstream_ok = self._credentials(
            "downstream credentials",
            self.downstream,
            e.account_id,
            "downstream",
            self.downstream_source,
        )
        upstream_ok = False
        if e.same_account:
            self.upstream = self.downstream
            upstream_ok = downstream_ok
        elif self.upstream is None:
            self._add(
                "upstream credentials",
                UNKNOWN,
                f"none given: set UPSTREAM_AWS_PROFILE to a profile of the upstream account "
                f"{e.upstream_account_id} to check its grant and its policy scope"
                + (" and the upstream digest" if self.image is not None else ""),
            )
        else:
            upstream_ok = self._credentials(
                "upstream credentials",
                self.upstream,
                e.upstream_account_id,
                "upstream",
                self.upstream_source,
            )
        if not downstream_ok:
            for name in self._downstream_names():
                self._add(name, UNKNOWN, NOT_CHECKED_DOWNSTREAM)
        if not upstream_ok:
            why = (
                f"{NOT_CHECKED}no usable upstream credentials"
                if downstream_ok or not e.same_account
                else NOT_CHECKED_DOWNSTREAM
            )
            for name in self._upstream_names():
                self._add(name, UNKNOWN, why)
        if downstream_ok:
            self._rules()
            self._cache_role()
        if upstream_ok:
            self._upstream_grant()
        if downstream_ok:
            self._templates_links()
            self._consumers()
        if self.image is not None and (downstream_ok or upstream_ok):
            self._canary(downstream_ok, upstream_ok)
        return self._ordered()

    def _ordered(self) -> list[Link]:
        order = [
            "downstream credentials",
            "upstream credentials",
            *[self._rule_link(r) for r in self.expected.rules],
            "cache role trust",
            "cache role permissions",
            "upstream grant",
            "upstream policy scope",
        ]
        rank = {name: i for i, name in enumerate(order)}
        return sorted(self.links, key=lambda link: rank.get(link.name, len(order)))

    def _credentials(
        self, name: str, client_for: ClientFor, account: str, side: str, source: str
    ) -> bool:
        try:
            identity = client_for("sts", self.expected.home_region).get_caller_identity()
        except (ClientError, BotoCoreError) as err:
            # A fleet member's credentials come from sts:AssumeRole, made on the first call.
            operation = getattr(err, "operation_name", "") or "GetCallerIdentity"
            why = could_not_ask(err, f"sts:{operation}", side)
            fix = ""
            if credential_problem(err) == "credentials" and f"{side.upper()}_AWS_PROFILE" in source:
                fix = (
                    f". Log in (e.g. `aws sso login`), or set {side.upper()}_AWS_PROFILE to a "
                    f"profile of account {account}"
                )
            self._add(name, UNKNOWN, f"{why} [credentials: {source}]{fix}")
            return False
        actual = str(identity.get("Account"))
        if actual != account:
            self._add(
                name,
                BROKEN,
                f"the {side} credentials ({source}) are of account {actual} "
                f"({identity.get('Arn')}), but the {side} account of stack "
                f"{self.expected.stack} is {account}: use credentials of account {account}",
            )
            return False
        self._add(name, OK, f"account {actual} as {identity.get('Arn')}")
        return True

    # -- rules --

    def _rules(self) -> None:
        for region in self.expected.regions:
            rules = [r for r in self.expected.rules if r.region == region]
            names = [self._rule_link(r) for r in rules]
            self._guarded(
                names,
                "ecr:DescribePullThroughCacheRules",
                "downstream",
                functools.partial(self._rules_in, region, rules),
            )

    def _expected_role(self) -> str:
        e = self.expected
        if e.cache_role_arn:
            return e.cache_role_arn
        if e.cache_role_name:
            return f"a role named {e.cache_role_name}"
        return f"a role named {e.cache_role_autoname_prefix}*"

    def _role_matches(self, arn: str) -> bool:
        e = self.expected
        if e.cache_role_arn:
            return arn == e.cache_role_arn
        name = _role_name(arn)
        if e.cache_role_name:
            return name == e.cache_role_name
        return name.startswith(e.cache_role_autoname_prefix)

    def _rules_in(self, region: str, rules: Sequence[ExpectedRule]) -> None:
        ecr = self.downstream("ecr", region)
        live = {
            r["ecrRepositoryPrefix"]: r
            for r in _paginate(ecr.describe_pull_through_cache_rules, "pullThroughCacheRules")
        }
        self._live_rules[region] = live
        for rule in rules:
            name = self._rule_link(rule)
            found = live.get(rule.ecr_repository_prefix)
            if found is None:
                self._add(
                    name,
                    BROKEN,
                    f"no pull-through-cache rule {rule.ecr_repository_prefix} in {region}, one "
                    f"of the stack's ecr-ptc:regions: pulls there fail. Run `make up` to create "
                    "it again",
                )
                continue
            problems = []
            url = found.get("upstreamRegistryUrl")
            if url != self.expected.upstream_registry_url:
                problems.append(
                    f"it pulls from {url}, the stack's upstream is "
                    f"{self.expected.upstream_registry_url}"
                )
            upstream_prefix = found.get("upstreamRepositoryPrefix") or ROOT_PREFIX
            if upstream_prefix != rule.upstream_repository_prefix:
                problems.append(
                    f"its upstream prefix is {upstream_prefix}, the stack's "
                    f"{rule.upstream_repository_prefix}"
                )
            role = found.get("customRoleArn")
            if not role:
                problems.append("it names no cache role (customRoleArn): ECR-to-ECR needs one")
            elif not self._role_matches(role):
                problems.append(f"it uses the role {role}, not {self._expected_role()}")
            if problems:
                self._add(
                    name,
                    BROKEN,
                    "; ".join(problems) + ". It was changed outside the stack: `make up` "
                    "puts the stack's rule back",
                )
                continue
            self._guarded(
                [name],
                "ecr:ValidatePullThroughCacheRule",
                "downstream",
                functools.partial(self._validate, name, rule, ecr),
            )

    def _validate(self, name: str, rule: ExpectedRule, ecr: Any) -> None:
        answer = ecr.validate_pull_through_cache_rule(
            ecrRepositoryPrefix=rule.ecr_repository_prefix
        )
        if not answer.get("isValid"):
            self._add(
                name,
                BROKEN,
                f"ECR cannot use it: {answer.get('failure') or 'ECR gave no reason'}. See the "
                "cache role and upstream lines for the cause",
            )
            return
        where = self.expected.upstream_registry_url
        if rule.upstream_repository_prefix != ROOT_PREFIX:
            where += f"/{rule.upstream_repository_prefix.rstrip('/')}"
        self._add(name, OK, f"validated, pulls from {where}")

    # -- the cache role --

    def _cache_role_arn(self) -> str | None:
        """The role the live rules name (what ECR assumes), else the one config names."""
        e = self.expected
        for region in e.regions:
            live = self._live_rules.get(region, {})
            for prefix in e.prefixes(region):
                arn = (live.get(prefix) or {}).get("customRoleArn")
                if arn and self._role_matches(arn):
                    return str(arn)
        if e.cache_role_arn:
            return e.cache_role_arn
        if e.cache_role_name:
            return e.cache_role_name
        return None

    def _cache_role(self) -> None:
        names = ["cache role trust", "cache role permissions"]
        self._guarded(names, "iam:GetRole", "downstream", self._cache_role_links)

    def _cache_role_links(self) -> None:
        arn = self._cache_role_arn()
        if arn is None:
            why = (
                "no rule of the stack names its cache role and config names none "
                "(ecr-ptc:roleName): see the rule lines"
            )
            self._add("cache role trust", UNKNOWN, why)
            self._add("cache role permissions", UNKNOWN, why)
            return
        name = _role_name(arn)
        role = self._get_role(name)
        if role is None:
            missing = (
                f"the cache role {name} does not exist: ECR cannot fill the cache. `make up` "
                "creates it again (an ecr-ptc:cacheRoleArn role: its owner must)"
            )
            self._add("cache role trust", BROKEN, missing)
            self._add("cache role permissions", BROKEN, missing)
            return
        status, detail = trust_verdict(
            policy_document_of(role.get("AssumeRolePolicyDocument")), PULL_THROUGH_CACHE_SERVICE
        )
        if status == BROKEN:
            detail = (
                f"the cache role {name}: {detail}. Its trust must allow the service principal "
                f"{PULL_THROUGH_CACHE_SERVICE} sts:AssumeRole (`make up` restores the stack's)"
            )
        self._add("cache role trust", status, detail)
        self._guarded(
            ["cache role permissions"],
            "iam:SimulatePrincipalPolicy",
            "downstream",
            functools.partial(self._cache_role_permissions, name, str(role["Arn"])),
        )

    def _cache_role_permissions(self, name: str, role_arn: str) -> None:
        e = self.expected
        patterns = {_probe(p): p for p in e.upstream_reads}
        denials = simulate(
            self._iam(),
            role_arn,
            CACHE_READ_ACTIONS,
            sorted(patterns),
            region_context(e.upstream_region),
        )
        shown: dict[str, str] = dict(patterns)
        for region in e.regions:
            arns = {e.cache_arn(region, p): p for p in e.prefixes(region)}
            for arn, prefix in arns.items():
                shown[arn] = repository_arn_in(
                    e.partition, region, e.account_id, repositories_under(prefix)
                )
            denials += simulate(
                self._iam(),
                role_arn,
                (*CACHE_READ_ACTIONS, *CACHE_WRITE_ACTIONS, REGISTRY_LOGIN_ACTION),
                sorted(arns),
                region_context(region),
            )
        if denials:
            owner = (
                "its owner must grant them (ecr-ptc:cacheRoleArn: the stack does not manage it)"
                if e.cache_role_arn
                else "`make up` puts the stack's permission policy back"
            )
            self._add(
                "cache role permissions",
                BROKEN,
                f"IAM's simulator denies the cache role {name} "
                f"{denials_text(denials, lambda r: shown.get(r, r))}: cache fills fail; {owner}",
            )
            return
        self._add(
            "cache role permissions",
            OK,
            f"{name} may read {', '.join(e.upstream_reads)} and write the cache in "
            f"{', '.join(e.regions)}",
        )

    # -- the upstream --

    def _upstream_grant(self) -> None:
        e = self.expected
        if e.same_account:
            self._add("upstream grant", OK, "the upstream is this account's own: no grant needed")
            self._add("upstream policy scope", OK, "the upstream is this account's own")
            return
        upstream = self.upstream
        assert upstream is not None

        def ecr() -> Any:
            return upstream("ecr", e.upstream_region)

        if e.upstream_grant_repositories:
            self._guarded(
                ["upstream grant"],
                "ecr:GetRepositoryPolicy",
                "upstream",
                lambda: self._repository_grants(ecr()),
            )
            self._add(
                "upstream policy scope",
                OK,
                "the upstream grants by repository policy: the registry policy scope does not "
                "matter",
            )
            return
        self._guarded(
            ["upstream grant"],
            "ecr:GetRegistryPolicy",
            "upstream",
            lambda: self._registry_grant(ecr()),
        )
        self._guarded(
            ["upstream policy scope"],
            "ecr:GetAccountSetting",
            "upstream",
            lambda: self._scope(ecr()),
        )

    def _finding(
        self, statements: Sequence[Mapping[str, Any]], needed: Sequence[str], what: str
    ) -> GrantFinding:
        e = self.expected
        finding = grant_finding(statements, e.account_id, needed, None, what)
        if not finding.needs_organization:
            return finding
        organization = self._organization_of_account()
        if organization is None:
            return GrantFinding(
                UNKNOWN,
                f"{what} grants by organization, and this account's organization could not be "
                f"asked: {self._organization_error}",
            )
        return grant_finding(statements, e.account_id, needed, organization, what)

    def _organization_of_account(self) -> str | None:
        """This account's organization ID, "" when it is in none, None when not known."""
        if not self._organization_asked:
            self._organization_asked = True
            try:
                client = self.downstream("organizations", self.expected.home_region)
                self._organization = str(client.describe_organization()["Organization"]["Id"])
            except ClientError as err:
                if _code(err) == "AWSOrganizationsNotInUseException":
                    self._organization = ""
                else:
                    self._organization_error = could_not_ask(
                        err, "organizations:DescribeOrganization", "downstream"
                    )
            except BotoCoreError as err:
                self._organization_error = could_not_ask(
                    err, "organizations:DescribeOrganization", "downstream"
                )
        return self._organization

    def _registry_grant(self, ecr: Any) -> None:
        e = self.expected
        what = f"the upstream's registry policy ({e.upstream_account_id}, {e.upstream_region})"
        try:
            text = ecr.get_registry_policy()["policyText"]
        except ClientError as err:
            if _code(err) != "RegistryPolicyNotFoundException":
                raise
            self._add(
                "upstream grant",
                BROKEN,
                f"{what} does not exist: it grants no one. `make up` the upstream stack (or add "
                "the grant to whoever manages that policy)",
            )
            return
        needed = sorted({repository_glob(arn) for arn in e.upstream_reads})
        finding = self._finding(statements_of(json.loads(text)), needed, what)
        self._add("upstream grant", finding.status, finding.detail)

    def _repository_grants(self, ecr: Any) -> None:
        e = self.expected
        problems: list[GrantFinding] = []
        for repository in e.upstream_grant_repositories:
            what = f"the policy of upstream repository {repository}"
            try:
                text = ecr.get_repository_policy(repositoryName=repository)["policyText"]
            except ClientError as err:
                if _code(err) not in (
                    "RepositoryPolicyNotFoundException",
                    "RepositoryNotFoundException",
                ):
                    raise
                problems.append(
                    GrantFinding(BROKEN, f"{what}: {_code(err)}; `make up` the upstream stack")
                )
                continue
            finding = self._finding(statements_of(json.loads(text)), ["*"], what)
            if finding.status != OK:
                problems.append(finding)
        if not problems:
            self._add(
                "upstream grant",
                OK,
                f"{len(e.upstream_grant_repositories)} repository policies grant {e.account_id}",
            )
            return
        status = BROKEN if any(p.status == BROKEN for p in problems) else UNKNOWN
        self._add("upstream grant", status, " | ".join(p.detail for p in problems))

    def _scope(self, ecr: Any) -> None:
        value = ecr.get_account_setting(name=REGISTRY_POLICY_SCOPE).get("value")
        if value == "V2":
            self._add("upstream policy scope", OK, "V2")
            return
        self._add(
            "upstream policy scope",
            BROKEN,
            f"the upstream registry's {REGISTRY_POLICY_SCOPE} is {value}: under V1 a registry "
            "policy may hold only ecr:ReplicateImage, ecr:BatchImportUpstreamImage and "
            "ecr:CreateRepository, so the reads a cache fill needs are not granted. Set it to V2: "
            "ecr-ptc:manageRegistryPolicyScope true on the upstream stack and `make up`, or `aws "
            "ecr put-account-setting --name REGISTRY_POLICY_SCOPE --value V2`",
        )

    # -- creation templates --

    def _live_templates(self, region: str) -> list[dict[str, Any]]:
        if region not in self._templates:
            ecr = self.downstream("ecr", region)
            self._templates[region] = _paginate(
                ecr.describe_repository_creation_templates, "repositoryCreationTemplates"
            )
        return self._templates[region]

    def _template_for(self, region: str, prefix: str) -> dict[str, Any] | None:
        """The creation template ECR applies to the rule's new cache repositories."""
        applies = [
            t for t in self._live_templates(region) if APPLIED_FOR in t.get("appliedFor", [])
        ]
        for wanted in (prefix, ROOT_PREFIX):
            for template in applies:
                if template.get("prefix") == wanted:
                    return template
        return None

    def _templates_links(self) -> None:
        e = self.expected
        planned = set(e.templates)
        for region in e.regions:
            prefixes = e.prefixes(region)
            names = [
                f"template {p} in {region}: {what}"
                for p in prefixes
                if (region, p) in planned
                for what in ("role", "tag refresh")
            ]
            self._guarded(
                names,
                "ecr:DescribeRepositoryCreationTemplates",
                "downstream",
                functools.partial(self._templates_in, region, prefixes, planned),
            )

    def _templates_in(
        self, region: str, prefixes: Sequence[str], planned: set[tuple[str, str]]
    ) -> None:
        for prefix in prefixes:
            base = f"template {prefix} in {region}"
            template = self._template_for(region, prefix)
            if template is None:
                if (region, prefix) in planned:
                    missing = (
                        f"no creation template applies to {prefix} in {region} (the stack's "
                        "ecr-ptc:repositoryTemplate): new cache repositories get ECR's defaults. "
                        "`make up` creates it again"
                    )
                    self._add(f"{base}: role", BROKEN, missing)
                    self._add(f"{base}: tag refresh", OK, "no template: MUTABLE, ECR's default")
                continue
            self._guarded(
                [f"{base}: role"],
                "iam:GetRole",
                "downstream",
                functools.partial(self._template_role, f"{base}: role", template, region, prefix),
            )
            self._tag_refresh(f"{base}: tag refresh", template)

    def _template_role(
        self, name: str, template: Mapping[str, Any], region: str, prefix: str
    ) -> None:
        tags = [f"{t.get('Key')}={t.get('Value')}" for t in template.get("resourceTags") or []]
        encryption = template.get("encryptionConfiguration") or {}
        kms = str(encryption.get("encryptionType", "")).startswith("KMS")
        key = encryption.get("kmsKey")
        which = f"template {template.get('prefix')}"
        uses = " and ".join(
            [
                *(["adds tags " + ", ".join(tags)] if tags else []),
                *(["encrypts with KMS"] if kms else []),
            ]
        )
        role_arn = template.get("customRoleArn")
        if not uses:
            self._add(name, OK, f"{which} adds no tags and uses no KMS key: no role needed")
            return
        if not role_arn:
            self._add(
                name,
                BROKEN,
                f"{which} {uses} but has no role (customRoleArn): ECR cannot create the cache "
                "repository, so every first pull fails with 'repository does not exist' "
                "(aws/containers-roadmap#2398). Give it a role trusted by "
                f"{ECR_SERVICE} with {CREATE_REPOSITORY}"
                + (f", {CONSUMER_TAG_ACTION}" if tags else "")
                + (
                    f" and {', '.join((*TEMPLATE_KMS_ACTIONS, TEMPLATE_KMS_GRANT_ACTION))}"
                    if kms
                    else ""
                )
                + ": the stack does so for its own template (ecr-ptc:repositoryTemplate, "
                "`make up`)",
            )
            return
        role_name = _role_name(str(role_arn))
        role = self._get_role(role_name)
        if role is None:
            self._add(
                name,
                BROKEN,
                f"{which}'s role {role_name} does not exist: first pulls fail. `make up`",
            )
            return
        status, detail = trust_verdict(
            policy_document_of(role.get("AssumeRolePolicyDocument")), ECR_SERVICE
        )
        if status != OK:
            self._add(name, status, f"{which}'s role {role_name}: {detail}")
            return
        actions = [CREATE_REPOSITORY, *([CONSUMER_TAG_ACTION] if tags else [])]
        check = functools.partial(
            self._template_permissions,
            name,
            which,
            role_name,
            str(role["Arn"]),
            actions,
            region,
            prefix,
            key if kms else None,
        )
        self._guarded([name], "iam:SimulatePrincipalPolicy", "downstream", check)

    def _template_permissions(
        self,
        name: str,
        which: str,
        role_name: str,
        role_arn: str,
        actions: Sequence[str],
        region: str,
        prefix: str,
        key: str | None,
    ) -> None:
        e = self.expected
        denials = simulate(
            self._iam(), role_arn, actions, [e.cache_arn(region, prefix)], region_context(region)
        )
        if key:
            denials += simulate(self._iam(), role_arn, TEMPLATE_KMS_ACTIONS, [key], {})
            grant_condition = {
                k: (str(v).lower(), "boolean") for k, v in GRANT_FOR_AWS_RESOURCE["Bool"].items()
            }
            denials += simulate(
                self._iam(), role_arn, [TEMPLATE_KMS_GRANT_ACTION], [key], grant_condition
            )
        if denials:
            self._add(
                name,
                BROKEN,
                f"IAM's simulator denies {which}'s role {role_name} {denials_text(denials)}: "
                "ECR cannot create cache repositories, so first pulls fail. `make up`",
            )
            return
        self._add(name, OK, f"{which} has the role it needs ({role_name})")

    def _tag_refresh(self, name: str, template: Mapping[str, Any]) -> None:
        mutability = template.get("imageTagMutability") or "MUTABLE"
        filters = [
            str(f.get("filter")) for f in template.get("imageTagMutabilityExclusionFilters") or []
        ]
        which = f"template {template.get('prefix')}"
        if mutability == "IMMUTABLE" or (mutability == "IMMUTABLE_WITH_EXCLUSION" and not filters):
            self._add(
                name,
                BROKEN,
                f"{which} makes the cache's tags IMMUTABLE without exclusions: ECR never "
                "refreshes a cached tag, so moving tags (latest, 1.2) keep their first digest. "
                "Set imageTagMutability MUTABLE, or IMMUTABLE_WITH_EXCLUSION with "
                "imageTagMutabilityExclusionFilters for the moving tags "
                "(ecr-ptc:repositoryTemplate), "
                "`make up`; repositories already created keep theirs (aws ecr "
                "put-image-tag-mutability)",
            )
        elif mutability == "IMMUTABLE_WITH_EXCLUSION":
            self._add(name, OK, f"tags matching {', '.join(filters)} refresh; the others never do")
        elif mutability == "MUTABLE_WITH_EXCLUSION" and filters:
            self._add(name, OK, f"mutable; tags matching {', '.join(filters)} never refresh")
        else:
            self._add(name, OK, "tags are mutable: ECR refreshes them")

    # -- consumers --

    def _tags_in(self, region: str, prefix: str) -> bool:
        try:
            template = self._template_for(region, prefix)
        except (ClientError, BotoCoreError):
            return False
        return bool(template and template.get("resourceTags"))

    def _consumers(self) -> None:
        for role in self.expected.consumer_roles:
            name = f"consumer {role}"
            check = functools.partial(self._consumer, name, role)
            self._guarded([name], "iam:GetRole", "downstream", check)

    def _consumer(self, name: str, role_name: str) -> None:
        e = self.expected
        role = self._get_role(role_name)
        if role is None:
            self._add(
                name,
                BROKEN,
                f"the consumer role {role_name} (ecr-ptc:consumerRoleNames) does not exist",
            )
            return
        denials: list[Denial] = []
        shown: dict[str, str] = {}
        for region in e.regions:
            for prefix in e.prefixes(region):
                arn = e.cache_arn(region, prefix)
                shown[arn] = repository_arn_in(
                    e.partition, region, e.account_id, repositories_under(prefix)
                )
                tags = [CONSUMER_TAG_ACTION] if self._tags_in(region, prefix) else []
                denials += simulate(
                    self._iam(),
                    str(role["Arn"]),
                    (*CONSUMER_PULL_ACTIONS, *tags, REGISTRY_LOGIN_ACTION),
                    [arn],
                    region_context(region),
                )
        if denials:
            hint = ""
            if any(
                d.action in ("ecr:CreateRepository", "ecr:BatchImportUpstreamImage")
                for d in denials
            ):
                hint = (
                    " A pull of an image not yet cached then fails with 'repository does not "
                    "exist' (aws/containers-roadmap#2053, #939)."
                )
            self._add(
                name,
                BROKEN,
                f"IAM's simulator denies {role_name} "
                f"{denials_text(denials, lambda r: shown.get(r, r))}."
                f"{hint} Attach the stack's consumer policy (ecr-ptc:consumerRoleNames, `make up`)",
            )
            return
        self._add(name, OK, f"may pull through the cache in {', '.join(e.regions)}")

    # -- the canary --

    def _canary(self, downstream_ok: bool, upstream_ok: bool) -> None:
        e = self.expected
        image = self.image
        assert image is not None
        mapped = upstream_repository(e.rules, image.repository)
        if mapped is None:
            why = (
                f"{image.repository} is under no rule prefix of the stack "
                f"({', '.join(sorted({r.ecr_repository_prefix for r in e.rules}))}): IMAGE names "
                "a cache repository, e.g. <prefix>/<repository>:<tag>"
            )
            for region in e.regions:
                if downstream_ok:
                    self._add(f"canary {image} in {region}", UNKNOWN, why)
                if upstream_ok:
                    self._add(f"cached digest {image} in {region}", UNKNOWN, why)
            return
        _, upstream_name = mapped
        cached: dict[str, str | None] = {}
        if downstream_ok:
            for region in e.regions:
                name = f"canary {image} in {region}"
                cached[region] = None
                self._guarded(
                    [name],
                    "ecr:BatchGetImage",
                    "downstream",
                    functools.partial(self._pull, name, region, cached),
                )
        if not upstream_ok:
            return
        names = [f"cached digest {image} in {region}" for region in e.regions]
        if not downstream_ok:
            for name in names:
                self._add(name, UNKNOWN, NOT_CHECKED_DOWNSTREAM)
            return
        digest: dict[str, str | None] = {"value": None}
        self._guarded(
            names,
            "ecr:DescribeImages",
            "upstream",
            lambda: digest.__setitem__("value", self._upstream_digest(names, upstream_name)),
        )
        if digest["value"] is None:
            return
        for region, name in zip(e.regions, names, strict=True):
            if cached.get(region) is None:
                self._add(name, UNKNOWN, "no cached digest to compare: see the canary line")
            elif cached[region] == digest["value"]:
                self._add(name, OK, f"{cached[region]}, the upstream's")
            else:
                self._add(
                    name,
                    BROKEN,
                    f"stale tag: the cache in {region} serves {cached[region]}, the upstream's "
                    f"{upstream_name}:{image.tag} is now {digest['value']}. ECR refreshes a "
                    "cached tag at least once every 24 hours, and only while the cache "
                    "repository's tags are mutable (see the tag refresh lines); to refresh now, "
                    f"delete the cached tag (aws ecr batch-delete-image --region {region} "
                    f"--repository-name {image.repository} --image-ids imageTag={image.tag}) "
                    "and pull again",
                )

    def _pull(self, name: str, region: str, cached: dict[str, str | None]) -> None:
        cached[region] = self._pulled_digest(name, region)

    def _pulled_digest(self, name: str, region: str) -> str | None:
        image = self.image
        assert image is not None
        ecr = self.downstream("ecr", region)
        started = self.clock()
        try:
            answer = ecr.batch_get_image(
                repositoryName=image.repository,
                imageIds=[{"imageTag": image.tag}],
                acceptedMediaTypes=list(MANIFEST_MEDIA_TYPES),
            )
        except ClientError as err:
            code = _code(err)
            if code not in ("RepositoryNotFoundException", "UnableToGetUpstreamImageException"):
                raise
            self._add(
                name,
                BROKEN,
                f"the pull failed after {self.clock() - started:.2f} s: {code}: "
                f"{_one_line(err.response.get('Error', {}).get('Message', ''))}. "
                "A 'repository does not exist' here usually means the cache could not create "
                "the repository (see the consumer and template lines; aws/containers-roadmap#2354)",
            )
            return None
        seconds = self.clock() - started
        failures = answer.get("failures") or []
        images = answer.get("images") or []
        if failures or not images:
            failure = failures[0] if failures else {}
            self._add(
                name,
                BROKEN,
                f"the pull failed after {seconds:.2f} s: {failure.get('failureCode', 'no image')}: "
                f"{_one_line(failure.get('failureReason', ''))}. See the upstream and cache role "
                "lines",
            )
            return None
        digest = str(images[0].get("imageId", {}).get("imageDigest", ""))
        self._add(name, OK, f"pulled in {seconds:.2f} s, {digest}")
        return digest

    def _upstream_digest(self, names: Sequence[str], repository: str) -> str | None:
        e = self.expected
        assert self.upstream is not None and self.image is not None
        ecr = self.upstream("ecr", e.upstream_region)
        try:
            details = ecr.describe_images(
                repositoryName=repository, imageIds=[{"imageTag": self.image.tag}]
            )["imageDetails"]
        except ClientError as err:
            if _code(err) not in ("ImageNotFoundException", "RepositoryNotFoundException"):
                raise
            for name in names:
                self._add(
                    name,
                    BROKEN,
                    f"the upstream has no {repository}:{self.image.tag} ({_code(err)}): nothing "
                    "to pull. Check IMAGE and the rule's upstream prefix",
                )
            return None
        return str(details[0]["imageDigest"]) if details else None


# --- the verdict --------------------------------------------------------------------------------

HEALTHY, SOME_BROKEN, COULD_NOT_CHECK = 0, 1, 2


def outcome(links: Sequence[Link]) -> tuple[int, str]:
    """The exit status and the last line: any BROKEN link is 1, else any UNKNOWN is 2."""
    statuses = [link.status for link in links]
    return verdict(statuses.count(BROKEN), statuses.count(UNKNOWN), len(links), "links")


def verdict(broken: int, unknown: int, total: int, things: str) -> tuple[int, str]:
    """The exit status and the last line of `total` links or members: broken wins over
    unknown, as in `make verify`."""
    if broken:
        also = f" ({unknown} could not be checked)" if unknown else ""
        return SOME_BROKEN, f"BROKEN: {broken} of {total} {things} broken{also}"
    if unknown:
        return COULD_NOT_CHECK, f"COULD NOT CHECK: {unknown} of {total} {things} unknown"
    return HEALTHY, f"HEALTHY: all {total} {things} ok"


def lines(links: Sequence[Link]) -> list[str]:
    """One line per link, the verdicts in one column."""
    width = max((len(link.name) for link in links), default=0)
    return [link.line(width) for link in links]
