"""`make fleet-doctor`: `make doctor` for every member of a fleet template, in parallel, one table.

The members are listed as the fleet driver lists them (scripts/fleet.py: the template's
accounts and OUs, or MEMBERS=<file> from `make fleet-members`), each planned offline with its
merged config. Each member is checked with its read-only preview role
(`ecr-ptc:accountPreviewRoleName`, the role `make fleet-preview` and the drift check use),
assumed with the ambient credentials in the member's own region; the upstream's links with
UPSTREAM_AWS_PROFILE when set (one upstream serves the fleet).

One table row per member, then each member's links that are not ok, then a last line. Exit
status 0 when every member is healthy, 1 when any link of any member is broken, 2 when some
could not be checked. `--json FILE` writes every member's links; with GITHUB_STEP_SUMMARY set
(a workflow run), the table and the problems are appended to the job summary as markdown.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from components.inputs.errors import ConfigError
from scripts.doctor import (
    STATUS_MARK,
    Upstreams,
    add_report_arguments,
    append_summary,
    markdown_cell,
    profile_clients,
    profile_source,
    report_options,
    session_clients,
    target_for,
    write_json,
)
from scripts.doctor_checks import (
    COULD_NOT_CHECK,
    HEALTHY,
    NOT_CHECKED,
    SOME_BROKEN,
    ClientFor,
    Doctor,
    Expected,
    Image,
    Link,
    lines,
    outcome,
    parse_image,
    verdict,
)
from scripts.doctor_policies import BROKEN, OK, UNKNOWN
from scripts.fleet_members import PREVIEW, Member, OrganizationsUnavailable

DEFAULT_PARALLELISM = 8
PARALLELISM_VARIABLE = "DOCTOR_PARALLELISM"
SESSION_NAME = "ecr-ptc-doctor"
LABELS = {HEALTHY: "HEALTHY", SOME_BROKEN: "BROKEN", COULD_NOT_CHECK: "COULD NOT CHECK"}
# A member's downstream clients and the upstream's (None: no upstream credentials).
MemberClients = Callable[[Member], tuple[ClientFor, ClientFor | None]]


@dataclass(frozen=True)
class MemberReport:
    stack: str
    account_id: str
    links: tuple[Link, ...]
    # Why the member could not be checked at all (its config refused, no preview role).
    error: str = ""

    @property
    def status(self) -> int:
        return COULD_NOT_CHECK if self.error else outcome(self.links)[0]

    def count(self, status: str) -> int:
        return sum(1 for link in self.links if link.status == status)

    @property
    def problems(self) -> list[Link]:
        if self.error:
            return [Link("member", UNKNOWN, self.error)]
        return [link for link in self.links if link.status != OK]

    def causes(self) -> tuple[list[Link], int]:
        """The problems worth reading, and how many links were only not checked because of
        one of them (unusable credentials)."""
        shown = [k for k in self.problems if not k.detail.startswith(NOT_CHECKED)]
        return shown, len(self.problems) - len(shown)

    def first_problem(self) -> str:
        problems = sorted(self.problems, key=lambda link: link.status != BROKEN)
        return f"{problems[0].name}: {problems[0].detail}" if problems else ""

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "accountId": self.account_id,
            "status": LABELS[self.status],
            "exitCode": self.status,
            "error": self.error,
            "links": [link.to_json() for link in self.links],
        }


def fleet_status(reports: Sequence[MemberReport]) -> tuple[int, str]:
    statuses = [r.status for r in reports]
    return verdict(
        statuses.count(SOME_BROKEN), statuses.count(COULD_NOT_CHECK), len(reports), "members"
    )


# --- credentials ----------------------------------------------------------------------------------


def member_session(member: Member, sts: Any = None) -> Any:
    """A session of the member's preview role, assumed with the ambient credentials through STS
    of the member's region (hence partition)."""
    import boto3

    region = str(member.config.get("aws:region") or "") or None
    sts = sts or boto3.session.Session().client("sts", region_name=region)
    answer = sts.assume_role(
        RoleArn=member.role_for(PREVIEW), RoleSessionName=SESSION_NAME, DurationSeconds=900
    )
    credentials = answer["Credentials"]
    return boto3.session.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name=region,
    )


def preview_role_clients(upstream: ClientFor | None) -> MemberClients:
    def clients(member: Member) -> tuple[ClientFor, ClientFor | None]:
        return session_clients(lambda: member_session(member)), upstream

    return clients


# --- the run --------------------------------------------------------------------------------------


def plan_members(
    members: Sequence[Member], project_dir: Path
) -> list[tuple[Member, Expected | None, str]]:
    """Each member's expected state, or why it has none. Offline and quick: done before the
    parallel part, so the upstream stack is planned once."""
    upstreams: Upstreams = {}
    planned: list[tuple[Member, Expected | None, str]] = []
    for member in members:
        try:
            expected = target_for(
                member.stack, member.config, project_dir, member.account_id, upstreams
            )
        except ConfigError as err:
            planned.append((member, None, f"its config is refused: {err}"))
            continue
        if not member.preview_role_arn:
            planned.append(
                (
                    member,
                    None,
                    "it has no preview role: regenerate the members file (make fleet-members)",
                )
            )
            continue
        planned.append((member, expected, ""))
    return planned


def check_members(
    planned: Sequence[tuple[Member, Expected | None, str]],
    clients: MemberClients,
    image: Image | None,
    parallelism: int,
    upstream_source: str,
    clock: Callable[[], float] = time.monotonic,
) -> list[MemberReport]:
    def check(entry: tuple[Member, Expected | None, str]) -> MemberReport:
        member, expected, error = entry
        if expected is None:
            return MemberReport(member.stack, member.account_id, (), error)
        downstream, upstream = clients(member)
        doctor = Doctor(
            expected,
            downstream,
            upstream,
            image,
            clock=clock,
            downstream_source=f"the member's preview role {member.preview_role_arn}",
            upstream_source=upstream_source,
        )
        return MemberReport(member.stack, member.account_id, tuple(doctor.run()))

    workers = max(1, min(parallelism, len(planned)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(check, planned))


# --- output ---------------------------------------------------------------------------------------

HEADERS = ("MEMBER", "ACCOUNT", "STATUS", "OK", "BROKEN", "UNKNOWN", "FIRST PROBLEM")
PROBLEM_WIDTH = 90


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def table(reports: Sequence[MemberReport]) -> str:
    rows = [
        (
            r.stack,
            r.account_id,
            LABELS[r.status],
            str(r.count(OK)),
            str(r.count(BROKEN)),
            str(r.count(UNKNOWN) + (1 if r.error else 0)),
            _short(r.first_problem(), PROBLEM_WIDTH),
        )
        for r in reports
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(HEADERS)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in (HEADERS, *rows)
    ]
    return "\n".join(lines) + "\n"


def details(reports: Sequence[MemberReport]) -> str:
    text = ""
    for report in reports:
        shown, skipped = report.causes()
        if shown or skipped:
            text += f"\n{report.stack} ({report.account_id}):\n"
            text += "".join(f"  {line}\n" for line in lines(shown))
            if skipped:
                text += f"  ({skipped} more links not checked because of that)\n"
    return text


def markdown(template: str, reports: Sequence[MemberReport], last: str) -> str:
    rows = [
        "| Member | Account | Status | ok | broken | unknown | First problem |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in reports:
        label = LABELS[r.status]
        rows.append(
            f"| {markdown_cell(r.stack)} | {r.account_id} | "
            f"{'**' + label + '**' if r.status == SOME_BROKEN else label} | {r.count(OK)} | "
            f"{r.count(BROKEN)} | {r.count(UNKNOWN) + (1 if r.error else 0)} | "
            f"{markdown_cell(_short(r.first_problem(), PROBLEM_WIDTH))} |"
        )
    text = (
        f"### make fleet-doctor: the members of `{markdown_cell(template)}`\n\n"
        f"**{markdown_cell(last)}**\n\n" + "\n".join(rows) + "\n"
    )
    troubled = [r for r in reports if r.problems]
    if troubled:
        text += "\n<details><summary>Every link that is not ok</summary>\n\n"
        text += "| Member | Link | Status | Detail |\n| --- | --- | --- | --- |\n"
        for r in troubled:
            shown, skipped = r.causes()
            for link in shown:
                text += (
                    f"| {markdown_cell(r.stack)} | {markdown_cell(link.name)} | "
                    f"{STATUS_MARK[link.status]} | {markdown_cell(link.detail)} |\n"
                )
            if skipped:
                text += (
                    f"| {markdown_cell(r.stack)} | {skipped} more links | UNKNOWN | not checked |\n"
                )
        text += "\n</details>\n"
    return text + "\n"


def report_json(template: str, reports: Sequence[MemberReport]) -> dict[str, Any]:
    status, last = fleet_status(reports)
    return {
        "template": template,
        "status": LABELS[status],
        "exitCode": status,
        "summary": last,
        "members": [r.to_json() for r in reports],
    }


# --- the command ----------------------------------------------------------------------------------


def parallelism(value: str | None) -> int:
    if not value:
        return DEFAULT_PARALLELISM
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(PARALLELISM_VARIABLE, value, "a whole number >= 1")
    return int(value)


def main(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    clients: MemberClients | None = None,
    organizations: Any = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    from scripts.fleet import load_members, refuse_empty

    out = out or sys.stdout
    err = err or sys.stderr
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--template", default="downstream")
    parser.add_argument("--members", default="", help="a members file (make fleet-members)")
    add_report_arguments(parser, "also write every member's links here ($DOCTOR_JSON)")
    args = parser.parse_args(argv)
    env = dict(os.environ if env is None else env)
    image_text, json_file = report_options(args, env)
    try:
        workers = parallelism(env.get(PARALLELISM_VARIABLE))
        image = parse_image(image_text) if image_text else None
        members = load_members(args.template, args.project_dir, args.members or None, organizations)
        refuse_empty(members, args.template, args.members or None)
    except (ConfigError, ValueError, OrganizationsUnavailable) as error:
        print(f"make fleet-doctor: {error}", file=err)
        print("COULD NOT CHECK: no member was checked", file=out)
        return COULD_NOT_CHECK
    upstream_profile = env.get("UPSTREAM_AWS_PROFILE") or None
    if clients is None:
        clients = preview_role_clients(
            profile_clients(upstream_profile) if upstream_profile else None
        )
    planned = plan_members(members, args.project_dir)
    reports = check_members(
        planned,
        clients,
        image,
        workers,
        profile_source("UPSTREAM_AWS_PROFILE", upstream_profile),
        clock,
    )
    status, last = fleet_status(reports)
    out.write(table(reports))
    out.write(details(reports))
    print(last, file=out)
    write_json(json_file, report_json(args.template, reports))
    append_summary(env, markdown(args.template, reports, last))
    return status


if __name__ == "__main__":
    sys.exit(main())
