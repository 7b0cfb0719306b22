"""Stack files read as the Pulumi CLI reads them (go-yaml v3: YAML 1.2 booleans, its own number
and date rules; a blank value is ""), and every file it could not read refused in one line naming
the file and line, by `make plan` too, quickly (alias bombs, deep nesting)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import plan
from scripts.fleet import write_stack_file
from scripts.stack_files import (
    PROJECT_DIR,
    StackFileError,
    cli_config,
    cli_yaml_text,
    load_yaml,
    stack_file_config,
)
from tests.pulumi_run import FIXTURES


def project(tmp_path: Path, **files: bytes) -> Path:
    shutil.copy(PROJECT_DIR / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    for stack, data in files.items():
        (tmp_path / f"Pulumi.{stack}.yaml").write_bytes(data)
    return tmp_path


def handed_over(tmp_path: Path, value: str, directive: str = "") -> str:
    """What the program receives for `ecr-ptc:x: <value>` written in a stack file."""
    text = f"{directive}config:\n  ecr-ptc:x: {value}\n"
    values = stack_file_config(project(tmp_path, s=text.encode()), "s")
    return cli_config(values, tmp_path)["ecr-ptc:x"]


# What go-yaml v3 (resolve.go) and the CLI make of each plain value: YAML 1.2 booleans, Go's
# integer syntax (0-led digits are octal; 012345678901 is not, so go-yaml reads the number as a
# float), JSON's integral floats, and a date as Go prints a time, top-level or nested (the CLI
# decodes every value into a Go `any`: sdk/go/common/resource/config/object.go). A top-level null
# or blank value is "" (sdk/go/common/workspace/loaders.go); nested, it stays null. !!binary is
# its decoded text, as go-yaml decodes it.
@pytest.mark.parametrize(
    ("written", "received"),
    [
        ("no", "no"),
        ("yes", "yes"),
        ("on", "on"),
        ("off", "off"),
        ("y", "y"),
        ("True", "true"),
        ("FALSE", "false"),
        ("012345678901", "12345678901"),
        ("'012345678901'", "012345678901"),
        ("123456789012", "123456789012"),
        ("0777", "511"),
        ("0o17", "15"),
        ("0x1F", "31"),
        ("1_000", "1000"),
        ("09", "9"),
        ("1e3", "1000"),
        ("1.5", "1.5"),
        (".5", "0.5"),
        ("~", ""),
        ("null", ""),
        ("NULL", ""),
        ("", ""),
        ("'null'", "null"),
        ("'~'", "~"),
        ("'True'", "True"),
        ("0x10", "16"),
        ("!!str 0x10", "0x10"),
        ("[~, null, '']", '[null, null, ""]'),
        ("{a: , b: ~}", '{"a": null, "b": null}'),
        ("!!binary aGVsbG8=", "hello"),
        ("[!!binary aGk=, !!binary 'aGk=']", '["hi", "hi"]'),
        ("<<", "<<"),
        ("2024-01-01", "2024-01-01 00:00:00 +0000 UTC"),
        ("2024-1-2", "2024-01-02 00:00:00 +0000 UTC"),
        ("2024-01-01T10:00:00.50Z", "2024-01-01 10:00:00.5 +0000 UTC"),
        ("2024-01-01T10:00:00+02:00", "2024-01-01 10:00:00 +0200 +0200"),
        ("2024-01-01 10:00:00", "2024-01-01 10:00:00 +0000 UTC"),
        ("'2024-01-01'", "2024-01-01"),
        ("2024-02-30", "2024-02-30"),
        ("[no, 012345678901, 1e3, 2024-01-01]",
         '["no", 12345678901, 1000, "2024-01-01 00:00:00 +0000 UTC"]'),
        ("{on: off}", '{"on": "off"}'),
    ],
)  # fmt: skip
def test_values_reach_the_program_as_the_cli_hands_them(
    tmp_path: Path, written: str, received: str
) -> None:
    assert handed_over(tmp_path, written) == received


def test_a_yaml_1_1_directive_changes_nothing_as_for_the_cli(tmp_path: Path) -> None:
    assert handed_over(tmp_path, "no", directive="%YAML 1.1\n---\n") == "no"


def test_a_byte_order_mark_is_read_past(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    utf8 = project(tmp_path / "a", s=b"\xef\xbb\xbfconfig:\n  aws:region: eu-west-1\n")
    assert stack_file_config(utf8, "s") == {"aws:region": "eu-west-1"}
    (tmp_path / "b").mkdir()
    utf16 = project(tmp_path / "b", s="\ufeffconfig:\n  aws:region: eu-west-1\n".encode("utf-16"))
    assert stack_file_config(utf16, "s") == {"aws:region": "eu-west-1"}


def test_an_empty_file_or_config_is_no_config(tmp_path: Path) -> None:
    assert stack_file_config(project(tmp_path, s=b""), "s") == {}
    assert stack_file_config(project(tmp_path, s=b"config:\n"), "s") == {}


# Each: the file's bytes, the line named, and a fragment of what is wrong.
MALFORMED = {
    "scalar": (b"aws:region us-east-1\n", 1, "holds text ('aws:region us-east-1'), not a mapping"),
    "list": (b"- config\n- aws:region\n", 1, "holds a list, not a mapping"),
    "number": (b"42\n", 1, "holds a number (42), not a mapping"),
    "config-list": (b"config:\n  - aws:region: us-east-1\n", 2, "`config:` holds a list"),
    "config-text": (b"encryptionsalt: x\nconfig: us-east-1\n", 2, "`config:` holds text"),
    "not-utf8": (b"config:\n  aws:region: us-east-1\n  ecr-ptc:x: caf\xe9\n", 3, "byte 0xe9 is not UTF-8"),
    "invalid": (b"config:\n  ecr-ptc:regions: [eu-west-1\n", 3, "expected ',' or ']'"),
    "tab": (b"config:\n\taws:region: us-east-1\n", 2, "found character '\\t'"),
    "twice": (b"config:\n  aws:region: us-east-1\n  aws:region: eu-west-1\n", 3,
              "the key 'aws:region' is given twice (first on line 2)"),
    "twice-nested": (b"config:\n  ecr-ptc:rules:\n    - ecrRepositoryPrefix: a\n      ecrRepositoryPrefix: b\n",
                     4, "the key 'ecrRepositoryPrefix' is given twice (first on line 3)"),
    "nan": (b"config:\n  ecr-ptc:x: [1, .nan]\n", 2, ".nan cannot be handed to a program"),
    "control": (b"config:\n  ecr-ptc:x: a\x07b\n", 2, "character #x0007 is not allowed"),
    "alias": (b"config:\n  ecr-ptc:x: *nothing\n", 2, "found undefined alias 'nothing'"),
    "two-documents": (b"config:\n  aws:region: us-east-1\n---\nconfig: {}\n", 3,
                      "a second YAML document"),
    "alias-in-itself": (b"config:\n  ecr-ptc:x: &a [1, [*a]]\n", 2,
                        "the alias *a is inside the value it names"),
    "deep-flow": (b"config:\n  ecr-ptc:x: " + b"[" * 2000 + b"]" * 2000 + b"\n", 2,
                  "nested more than 100 deep, deeper than this reader supports"),
    "deep-block": (b"config:\n  ecr-ptc:x:\n" + b"".join(b"  " * (i + 2) + b"-\n" for i in range(2000)),
                   101, "nested more than 100 deep, deeper than this reader supports"),
    "deep-by-alias": (b"config:\n" + b"".join(b"  ecr-ptc:a%d: &a%d [*a%d]\n" % (i, i, i - 1) for i in range(1, 120)).replace(b"*a0", b"1"),
                      100, "through the alias *a98, lists and mappings nested more than 100 deep"),
    "set": (b"config:\n  ecr-ptc:x: !!set {a, b}\n", 2, "a mapping tagged !!set"),
    "omap": (b"config:\n  ecr-ptc:x:\n    !!omap [a: 1]\n", 3, "a list tagged !!omap"),
    "pairs": (b"config:\n  ecr-ptc:x: [!!pairs [a: 1]]\n", 2, "a list tagged !!pairs"),
    "custom-tag": (b"config:\n  ecr-ptc:x: !custom text\n", 2, "a value tagged !custom"),
    "str-list": (b"config:\n  ecr-ptc:x: !!str [1]\n", 2, "a list tagged !!str"),
    "binary-base64": (b"config:\n  ecr-ptc:x: !!binary aGk\n", 2,
                      "!!binary value contains invalid base64 data"),
    "binary-bytes": (b"config:\n  ecr-ptc:x: !!binary /w==\n", 2,
                     "a !!binary value whose bytes are not UTF-8 text"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_file_the_cli_cannot_read_is_one_line_naming_file_and_line(
    tmp_path: Path, case: str
) -> None:
    data, line, problem = MALFORMED[case]
    with pytest.raises(StackFileError) as caught:
        stack_file_config(project(tmp_path, upstream=data), "upstream")
    message = str(caught.value)
    assert message.startswith(f"Pulumi.upstream.yaml line {line}: "), message
    assert problem in message and "\n" not in message


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_make_plan_prints_one_line_for_each_malformed_stack_file(tmp_path: Path, case: str) -> None:
    data, line, _ = MALFORMED[case]
    out, err = io.StringIO(), io.StringIO()
    code = plan.main(
        ["--project-dir", str(project(tmp_path, upstream=data))], out=out, err=err, env={}
    )
    assert code != 0
    assert out.getvalue() == ""
    assert err.getvalue().count("\n") == 1 and "Traceback" not in err.getvalue()
    assert err.getvalue().startswith(f"make plan: Pulumi.upstream.yaml line {line}: ")


# Nine anchors, each a list of ten of the one before: 10^9 values, which go-yaml v3 refuses
# ("document contains excessive aliasing"). Read, like the deepest files, in a child process with
# a memory cap and a timeout: before the fix it took minutes and gigabytes.
BOMB = b"config:\n  ecr-ptc:x:\n    - &a0 [x, x, x, x, x, x, x, x, x, x]\n" + b"".join(
    b"    - &a%d [%s]\n" % (n, b", ".join([b"*a%d" % (n - 1)] * 10)) for n in range(1, 9)
)
TIMED = """
import json, resource, sys, time
from pathlib import Path
try:
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
except (ValueError, OSError):  # not every system lets a process cap itself so
    pass
from scripts.stack_files import StackFileError, stack_file_config
refused = {}
for directory in sys.argv[1:]:
    started = time.perf_counter()
    try:
        stack_file_config(Path(directory), "upstream")
    except StackFileError as err:
        refused[directory] = [time.perf_counter() - started, str(err)]
print(json.dumps(refused))
"""


def test_alias_bombs_and_deep_nesting_are_refused_well_within_a_second(tmp_path: Path) -> None:
    files = {name: MALFORMED[name][0] for name in ("deep-flow", "deep-block", "deep-by-alias")}
    files["alias-bomb"] = BOMB
    for name, data in files.items():
        (tmp_path / name).mkdir()
        project(tmp_path / name, upstream=data)
    child = subprocess.run(
        [sys.executable, "-c", TIMED, *(str(tmp_path / name) for name in files)],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    refused = {Path(d).name: result for d, result in json.loads(child.stdout).items()}
    assert sorted(refused) == sorted(files), child.stdout
    assert max(seconds for seconds, _ in refused.values()) < 0.5, refused
    assert refused["alias-bomb"][1] == (
        "Pulumi.upstream.yaml line 11: aliases expand the document to 1,358,024,685 values, "
        "1,358,024,580 of them copies, which the Pulumi CLI refuses (go-yaml: document contains "
        "excessive aliasing); aliases copying at most 99% of the values (a smaller share past "
        "400,000)"
    )


def test_nesting_up_to_the_limit_and_a_few_aliases_are_read(tmp_path: Path) -> None:
    # The document's mapping and `config:` are two levels: 98 more make 100.
    deep = b"config:\n  ecr-ptc:x: " + b"[" * 98 + b"]" * 98 + b"\n"
    value = stack_file_config(project(tmp_path, s=deep), "s")["ecr-ptc:x"]
    for _ in range(97):
        (value,) = value
    assert value == []
    aliases = b"config:\n  ecr-ptc:x: &r [golden, base]\n  ecr-ptc:y: [*r, *r, *r]\n"
    read = stack_file_config(project(tmp_path, s=aliases), "s")
    assert read["ecr-ptc:y"] == [["golden", "base"]] * 3


def test_a_blank_value_is_unset_as_under_the_cli(tmp_path: Path) -> None:
    """`key:`, `~` and `null` reach the program as "" (the CLI warns it treats them so), which
    it reads as unset: a blank repositoryPrefix shares every repository, as under the CLI."""
    text = (FIXTURES / "Pulumi.upstream.yaml").read_text()
    blank = text.replace("ecr-ptc:repositoryPrefix: golden", "ecr-ptc:repositoryPrefix:")
    assert blank != text
    directory = project(tmp_path, upstream=blank.encode())
    values = stack_file_config(directory, "upstream")
    assert values["ecr-ptc:repositoryPrefix"] == ""
    assert cli_config(values, directory)["ecr-ptc:repositoryPrefix"] == ""
    out, err = io.StringIO(), io.StringIO()
    assert plan.main(["--project-dir", str(directory)], out=out, err=err, env={}) == 0, err
    assert ":111122223333:repository/*" in out.getvalue()
    assert "repository/null" not in out.getvalue()


def test_top_level_scalars_are_typed_as_under_the_pinned_cli(tmp_path: Path) -> None:
    """The CLI (3.88 on) decodes a top-level value into a Go `any` too: `True` is the boolean
    true, and an unquoted 012345678901 the number 12345678901, which is no account ID."""
    upstream = (FIXTURES / "Pulumi.upstream.yaml").read_text() + (
        "  ecr-ptc:manageRegistryPolicyScope: True\n"
    )
    downstream = (
        (FIXTURES / "Pulumi.downstream.yaml")
        .read_text()
        .replace(
            "ecr-ptc:upstreamStack: organization/ecr-ptc/upstream",
            "ecr-ptc:upstreamAccountId: 012345678901\n  ecr-ptc:upstreamRegion: us-east-1",
        )
    )
    directory = project(tmp_path, upstream=upstream.encode(), downstream=downstream.encode())
    received = cli_config(stack_file_config(directory, "upstream"), directory)
    assert received["ecr-ptc:manageRegistryPolicyScope"] == "true"
    out, err = io.StringIO(), io.StringIO()
    assert plan.main(["--project-dir", str(directory)], out=out, err=err, env={}) == 1
    assert err.getvalue() == (
        "make plan: stack downstream: config ecr-ptc:upstreamAccountId: '12345678901' is not "
        "valid: an AWS account ID: exactly 12 digits, quoted\n1 of 2 stacks planned; 1 refused\n"
    )


def test_a_null_default_in_pulumi_yaml_is_no_default(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text(
        "name: ecr-ptc\nruntime: python\nconfig:\n  ecr-ptc:a:\n    type: string\n"
        "    default: null\n  ecr-ptc:b:\n    type: string\n    default: x\n"
    )
    assert cli_config({}, tmp_path) == {"ecr-ptc:b": "x"}


def test_a_malformed_pulumi_yaml_is_named_too(tmp_path: Path) -> None:
    project(tmp_path, upstream=b"config:\n  aws:region: us-east-1\n")
    (tmp_path / "Pulumi.yaml").write_text("name: ecr-ptc\nname: other\n")
    err = io.StringIO()
    assert plan.main(["--project-dir", str(tmp_path)], out=io.StringIO(), err=err, env={}) == 1
    assert err.getvalue() == (
        "make plan: Pulumi.yaml line 2: the key 'name' is given twice (first on line 1); "
        "each key once, as the Pulumi CLI requires\n"
    )


def test_a_missing_pulumi_yaml_is_named(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.upstream.yaml").write_text("config:\n  aws:region: us-east-1\n")
    err = io.StringIO()
    assert plan.main(["--project-dir", str(tmp_path)], out=io.StringIO(), err=err, env={}) == 1
    assert err.getvalue() == (
        "make plan: Pulumi.yaml: cannot be read (No such file or directory); a readable file\n"
    )


def test_what_the_fleet_writes_the_cli_reads_back_unchanged(tmp_path: Path) -> None:
    """A member's stack file: an account ID with a leading zero, `no`, a date-like text and a
    number-like text stay text (written plain, the CLI would read numbers and a time)."""
    config = {
        "aws:allowedAccountIds": ["012345678901"],
        "ecr-ptc:x": ["no", "2024-01-01", "1e3", "0o17", "null", ""],
        "ecr-ptc:y": {"n": 1, "f": 1.5, "b": True, "none": None},
        "ecr-ptc:z": "",
        "ecr-ptc:when": "2024-01-01 00:00:00 +0000 UTC",
    }
    (tmp_path / "Pulumi.member.yaml").write_text("encryptionsalt: v1:salt\n")
    write_stack_file(tmp_path, "member", config)
    assert stack_file_config(tmp_path, "member") == config
    assert load_yaml(tmp_path / "Pulumi.member.yaml")["encryptionsalt"] == "v1:salt"
    assert load_yaml_text(tmp_path, cli_yaml_text({"a": "012"})) == {"a": "012"}


def load_yaml_text(tmp_path: Path, text: str) -> object:
    path = tmp_path / "Pulumi.text.yaml"
    path.write_text(text)
    return load_yaml(path)


def test_a_stack_named_in_full_reads_the_file_of_its_name(tmp_path: Path) -> None:
    """`organization/ecr-ptc/upstream` keeps its config in Pulumi.upstream.yaml, as the CLI's
    DetectProjectStackPath names the file after the stack's name alone; so `make up` checks the
    account a fully named stack pins instead of skipping the check."""
    from scripts.deploy import allowed_accounts
    from scripts.stack_files import stack_file

    (tmp_path / "Pulumi.upstream.yaml").write_text(
        "config:\n  aws:allowedAccountIds: ['111122223333']\n"
    )
    assert stack_file(tmp_path, "organization/ecr-ptc/upstream") == (
        tmp_path / "Pulumi.upstream.yaml"
    )
    assert allowed_accounts("organization/ecr-ptc/upstream", tmp_path) == ["111122223333"]
