"""The fleet's reports, from its summaries (FLEET_SUMMARY JSON, one per batch): the console table
and one Markdown text for the pull-request comment and the job summary.

The Markdown stays under GitHub's limits whatever the fleet's size (a comment holds at most
65,536 characters): counts by result, then the members that changed, failed or did not run in
full while they fit, unchanged members as a count, each member's details cut to its end; what
does not fit is counted, with a pointer to the summary artifacts that hold everything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

COMMENT_MAX_CHARS = 60000  # GitHub: 65,536 for a comment; the rest is a margin
DETAILS_MAX_CHARS = 1500  # the end of one member's details
TEXT_MAX_CHARS = 500  # one error or warning line
FOOTER_RESERVE = 1500
COMMENT_MARKER = "<!-- ecr-ptc-fleet-preview -->"
FENCE = "```"
ARTIFACTS = "the workflow run's `fleet-*-summary-*` artifacts (every member, in full)"

OK = ("succeeded", "new: planned", "pruned", "retained")


def change_text(changes: Mapping[str, int] | None) -> str:
    if changes is None:
        return "-"
    text = ", ".join(f"{op} {n}" for op, n in sorted(changes.items()) if op != "same" and n)
    return text or "none"


def _noteworthy(row: Mapping[str, Any]) -> bool:
    return row["result"] not in OK or change_text(row.get("changes")) not in ("none", "-")


def summary_table(summary: Mapping[str, Any]) -> str:
    """The console summary: one row per member (and per former member's stack), its reason."""
    header = ("account", "stack", "result", "changes", "duration", "reason")
    rows = [
        (
            m["accountId"],
            m["stack"],
            m["result"],
            change_text(m.get("changes")),
            f"{float(m.get('duration') or 0):.1f}s",
            m.get("reason") or "",
        )
        for m in summary["members"]
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]

    def line(row: Sequence[str]) -> str:
        cells = [c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)]
        return "  ".join([*cells, row[-1]]).rstrip()

    failed = sum(m["result"] not in OK for m in summary["members"])
    counts = ", ".join(f"{n} {r}" for r, n in sorted(_counts(summary["members"]).items()))
    tail = [
        f"{len(rows)} stacks, {len(rows) - failed} ok, {failed} not ({summary['command']} of "
        f"fleet {summary['template']!r}"
        + (f", batch {summary['batch']}" if summary.get("batch") else "")
        + f"): {counts or 'none'}"
    ]
    if summary.get("stopped"):
        tail.append(f"stopped: {summary['stopped']}")
    return "\n".join([line(header), *(line(r) for r in rows), *tail])


def _counts(rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["result"]] = counts.get(row["result"], 0) + 1
    return counts


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _short(text: str, limit: int = TEXT_MAX_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def comment(summaries: Sequence[Mapping[str, Any]], limit: int = COMMENT_MAX_CHARS) -> str:
    """One Markdown report from every batch's summary, under `limit` characters."""
    rows = sorted(
        (m for s in summaries for m in s["members"]), key=lambda m: (m["accountId"], m["stack"])
    )
    orphans = sorted({o for s in summaries for o in s.get("orphans", [])})
    errors = [e for s in summaries for e in s.get("errors", [])]
    warnings = [w for s in summaries for w in s.get("warnings", [])]
    stopped = sorted({s["stopped"] for s in summaries if s.get("stopped")})
    templates = sorted({s["template"] for s in summaries})
    commands = sorted({s["command"] for s in summaries})
    noteworthy = [r for r in rows if _noteworthy(r)]
    quiet = len(rows) - len(noteworthy)
    counts = ", ".join(f"{n} {r}" for r, n in sorted(_counts(rows).items()))
    lines = [
        COMMENT_MARKER,
        f"### Fleet {' / '.join(commands)}: {', '.join(f'`{t}`' for t in templates)}",
        "",
        f"**{len(rows)} accounts**: {counts or 'none'}. "
        f"{sum(change_text(r.get('changes')) not in ('none', '-') for r in rows)} with changes.",
    ]
    lines += [f"\n**Stopped:** {_short(s)}" for s in stopped[:5]]
    if len(stopped) > 5:
        lines.append(f"\n({len(stopped) - 5} more batches stopped: see {ARTIFACTS}.)")
    lines += [f"\n**Error:** {_short(e)}" for e in errors[:10]]
    lines += [f"\n**Warning:** {_short(w)}" for w in warnings[:10]]
    if orphans:
        shown = ", ".join(f"`{o}`" for o in orphans[:50])
        more = f" and {len(orphans) - 50} more" if len(orphans) > 50 else ""
        lines.append(
            f"\n**No longer members** (still deployed): {shown}{more}. `PRUNE=1 make fleet-up` "
            "deals with them."
        )
    body = "\n".join(lines) + "\n"
    if noteworthy:
        body += (
            "\n| account | stack | result | changes | reason |\n| --- | --- | --- | --- | --- |\n"
        )
    budget = limit - FOOTER_RESERVE
    shown_rows = 0
    for r in noteworthy:
        row = (
            f"| {r['accountId']} | `{r['stack']}` | {r['result']} | "
            f"{change_text(r.get('changes'))} | {_cell(_short(r.get('reason') or '', 200))} |\n"
        )
        if len(body) + len(row) > budget:
            break
        body += row
        shown_rows += 1
    footer = []
    if shown_rows < len(noteworthy):
        footer.append(
            f"{len(noteworthy) - shown_rows} more changed or failed members: see {ARTIFACTS}."
        )
    if quiet:
        footer.append(f"{quiet} members unchanged (listed in {ARTIFACTS}).")
    body += "\n" + "\n".join(footer) + "\n" if footer else ""
    shown_details = 0
    with_details = [r for r in noteworthy[:shown_rows] if r.get("details")]
    for r in with_details:
        # A fence inside the log would end the code block early.
        text = r["details"][-DETAILS_MAX_CHARS:].replace(FENCE, "'''")
        block = (
            f"\n<details><summary>{r['accountId']} {r['stack']}: {r['result']}</summary>\n\n"
            f"{FENCE}\n{text}\n{FENCE}\n</details>\n"
        )
        if len(body) + len(block) > budget:
            break
        body += block
        shown_details += 1
    if shown_details < len(with_details):
        body += (
            f"\n(The details of {len(with_details) - shown_details} more members are in "
            f"{ARTIFACTS}.)\n"
        )
    return body
