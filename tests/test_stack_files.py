"""Stack files read as the Pulumi CLI reads them (go-yaml v3: YAML 1.2 booleans, its own number
and date rules), and every file it could not read refused in one line naming the file and line,
by `make plan` too."""

from __future__ import annotations

import io
import shutil
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
# float), JSON's integral floats, and a date as Go prints a time.
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
        ("~", "null"),
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
