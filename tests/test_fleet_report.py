"""The fleet's reports stay readable and under GitHub's limits at any fleet size: the comment
(65,536 characters) and the console table, from the batches' JSON summaries."""

from __future__ import annotations

import re
from typing import Any

import pytest

from scripts.fleet_report import COMMENT_MARKER, comment, summary_table

GITHUB_COMMENT_MAX = 65536


def row(
    i: int,
    result: str = "succeeded",
    changes: dict[str, int] | None = None,
    details: str = "",
    reason: str = "",
) -> dict[str, Any]:
    return {
        "accountId": f"{300000000000 + i}",
        "stack": f"downstream-{300000000000 + i}",
        "result": result,
        "reason": reason,
        "changes": {"same": 7} if changes is None else changes,
        "duration": 61.0,
        "details": details,
        "steps": [],
    }


def summary(rows: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "template": "downstream",
        "command": "up",
        "batch": None,
        "orphans": [],
        "errors": [],
        "warnings": [],
        "stopped": "",
        "members": rows,
        **extra,
    }


def test_five_thousand_unchanged_members_are_a_count() -> None:
    text = comment([summary([row(i) for i in range(5000)])])
    assert len(text) < GITHUB_COMMENT_MAX
    assert "**5000 accounts**: 5000 succeeded. 0 with changes." in text
    assert "5000 members unchanged" in text
    assert "| 3000" not in text, "no row for an unchanged member"


@pytest.mark.parametrize("changed_every", [1, 10])
def test_five_thousand_members_with_changes_and_failures_stay_under_the_limit(
    changed_every: int,
) -> None:
    log = "update aws:iam/rolePolicy:RolePolicy cache-role-policy [policy]\n" * 200
    rows = []
    for i in range(5000):
        if i % 97 == 0:
            rows.append(row(i, "failed", None, "error: AccessDenied " * 50, "AccessDenied"))
        elif i % changed_every == 0:
            rows.append(row(i, changes={"update": 2, "same": 5}, details=log))
        else:
            rows.append(row(i))
    batches = [summary(rows[k : k + 25]) for k in range(0, 5000, 25)]
    text = comment(batches)
    assert len(text) < GITHUB_COMMENT_MAX
    failed = sum(r["result"] == "failed" for r in rows)
    assert f"{failed} failed" in text
    # The failures come first in account order with the changes: the first rows are shown whole.
    assert "| 300000000000 | `downstream-300000000000` | failed |" in text
    # Every changed or failed member is a row, or counted in the pointer to the artifacts.
    noteworthy = sum(r["result"] == "failed" or "update" in r["changes"] for r in rows)
    shown = sum(line.startswith("| 3000") for line in text.splitlines())
    more = re.search(r"(\d+) more changed or failed members: see", text)
    assert shown + (int(more[1]) if more else 0) == noteworthy
    assert "fleet-*-summary-*" in text


def test_a_small_fleet_shows_every_change_and_failure_with_details_and_reasons() -> None:
    rows = [
        row(0, changes={"create": 3}, details="create aws:iam/role:Role cache-role"),
        row(1, "failed", None, "error: boom", "boom | pipe"),
        row(2),
        row(3, "not started", None, "", "failure tolerance exceeded (2 failed, tolerance 1)"),
    ]
    text = comment([summary(rows, stopped="failure tolerance exceeded")])
    assert text.startswith(COMMENT_MARKER)
    assert "**Stopped:** failure tolerance exceeded" in text
    assert (
        "| 300000000003 | `downstream-300000000003` | not started | none | failure tolerance"
        in text
    )
    assert "boom \\| pipe" in text, "a pipe in a reason does not break the table"
    assert text.count("<details>") == 2 and "1 members unchanged" in text


def test_the_console_table_gives_every_row_its_reason_and_the_counts() -> None:
    rows = [row(0), row(1, "skipped", None, reason="cannot assume arn:aws:iam::1:role/x")]
    table = summary_table(summary(rows, stopped="SIGTERM"))
    lines = table.splitlines()
    assert lines[0].split() == ["account", "stack", "result", "changes", "duration", "reason"]
    assert lines[2].endswith("cannot assume arn:aws:iam::1:role/x")
    assert "2 stacks, 1 ok, 1 not" in table and "1 skipped, 1 succeeded" in table
    assert lines[-1] == "stopped: SIGTERM"


def test_a_fence_in_a_log_does_not_end_the_block_early() -> None:
    text = comment([summary([row(0, changes={"create": 1}, details="a\n```\nb")])])
    assert text.count("```") == 2
