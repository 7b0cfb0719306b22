"""The project's stack files, read as the Pulumi CLI reads them, without the CLI.

`Pulumi.<stack>.yaml` holds a stack's config; `Pulumi.yaml` declares the project's keys and their
defaults. The CLI hands the program every key, fully qualified, as a string (JSON for lists,
objects, numbers and booleans), defaults filled in: `cli_config` gives the program exactly that.

The CLI reads YAML with go-yaml v3: YAML 1.2 syntax (`no`, `yes`, `on`, `off` are strings), a
key given twice is an error. ruamel.yaml parses the files here; plain scalars are then resolved
by go-yaml v3's own table (its resolve.go), where it differs from YAML 1.2's core schema: an
unquoted `0777` is octal, `012345678901` (not octal) is the number 12345678901, and a date such
as `2024-01-01` reaches the program as the text Go prints for it,
`2024-01-01 00:00:00 +0000 UTC`.

How the CLI (3.88 and later; checked against pulumi/pulumi's source as of 3.259, the pin is
3.272) turns a stack file into the program's strings: sdk/go/common/workspace/loaders.go
decodes the file into Go values, writes them back as YAML and decodes that into config values;
sdk/go/common/resource/config/object.go decodes each value into a Go `any`, so a top-level
scalar is typed as go-yaml types it (`True` -> "true", `0x10` -> "16", `012345678901` ->
"12345678901") and a time is its `String()` at any depth; a top-level null or blank value
(`key:`, `~`, `null`) becomes "" (loaders.go, checkForEmptyConfig), which the program reads as
unset; inside a list or mapping a null stays JSON null.

Limits, each refused as one line naming the file and line:
- Aliases: go-yaml v3 (decode.go, allowedAliasRatio) refuses "document contains excessive
  aliasing" once more than 100 of the values it decodes are copies made by aliases, more than
  1,000 in all, and the copies are more than 99% of them (up to 400,000 values; the share falls
  linearly to 10% at 4,000,000). The expansion is counted while composing, once per distinct
  node, and the rule is applied to the whole document's totals (go-yaml applies it as it goes,
  so it can refuse sooner a document whose aliases all come first). An alias inside the value
  it names is refused as go-yaml refuses it.
- Nesting: lists and mappings at most MAX_DEPTH (100) deep, aliases expanded (go-yaml allows
  10,000; a stack file needs a few).
- Tags: `!!str`, `!!int`, `!!float`, `!!bool`, `!!null`, `!!timestamp` on plain values, `!!seq`
  on lists, `!!map` on mappings, and `!!binary`, which is read as go-yaml reads it: the decoded
  text (refused when it is not UTF-8, which the CLI cannot hand to the program). Any other tag
  (`!!set`, `!!omap`, `!!pairs`, `!custom`) is refused: go-yaml would read past it silently.

Any file the CLI could not read, or that is not shaped like a stack file, is a StackFileError: one
line naming the file and, where known, the line.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import copy
import datetime
import functools
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.composer import Composer, ComposerError
from ruamel.yaml.constructor import ConstructorError, SafeConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent, MappingStartEvent, SequenceStartEvent
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.resolver import VersionedResolver
from ruamel.yaml.scanner import Scanner
from ruamel.yaml.tag import Tag

from components.inputs.errors import ConfigError
from components.inputs.stack_config import NAMESPACE

PROJECT_DIR = Path(__file__).resolve().parent.parent
STACK_FILE_PREFIX = "Pulumi."
PROJECT_FILE = "Pulumi.yaml"
CONFIG = "config"


class StackFileError(ConfigError):
    """A stack file or Pulumi.yaml that cannot be read: where, what is wrong, what is valid."""

    def __init__(self, path: Path, line: int | None, problem: str, valid: str) -> None:
        where = path.name if line is None else f"{path.name} line {line}"
        # The key, value and valid parts of a ConfigError, but a message of its own: a file
        # is not a config key.
        self.key, self.value, self.valid = where, problem, valid
        Exception.__init__(self, f"{where}: {problem}; {valid}")


def qualify(key: str) -> str:
    """A key as `pulumi config` shows it: bare keys belong to the project."""
    return key if ":" in key else f"{NAMESPACE}:{key}"


def short_name(stack: str) -> str:
    """A stack's name within this project (`organization/ecr-ptc/upstream` -> `upstream`)."""
    return stack.rsplit("/", 1)[-1]


def stack_file(project_dir: Path, stack: str) -> Path:
    """Pulumi.<name>.yaml of a stack, named in full (`organization/project/name`) or not: the CLI
    keeps a stack's config in the file of its name alone."""
    return project_dir / f"{STACK_FILE_PREFIX}{short_name(stack)}.yaml"


def stack_names(project_dir: Path = PROJECT_DIR) -> list[str]:
    """Every stack that has a stack file here, sorted."""
    return sorted(
        p.name.removeprefix(STACK_FILE_PREFIX).removesuffix(".yaml")
        for p in project_dir.glob(f"{STACK_FILE_PREFIX}*.yaml")
        if p.name != PROJECT_FILE
    )


# --- plain scalars as go-yaml v3 resolves them --------------------------------------------------

_STR, _NULL, _BOOL = "tag:yaml.org,2002:str", "tag:yaml.org,2002:null", "tag:yaml.org,2002:bool"
_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_TIMESTAMP, _MERGE = "tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:merge"
_BINARY, _SEQ, _MAP = "tag:yaml.org,2002:binary", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"

_GO_WORDS: dict[str, tuple[str, object]] = {
    **dict.fromkeys(("true", "True", "TRUE"), (_BOOL, True)),
    **dict.fromkeys(("false", "False", "FALSE"), (_BOOL, False)),
    **dict.fromkeys(("", "~", "null", "Null", "NULL"), (_NULL, None)),
    **dict.fromkeys((".nan", ".NaN", ".NAN"), (_FLOAT, math.nan)),
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), (_FLOAT, math.inf)),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), (_FLOAT, -math.inf)),
}
# strconv.ParseInt(s, 0, 64) after removing `_`: Go's prefixes, and 0-led digits are octal.
_GO_INT = re.compile(r"([-+]?)(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)")
_GO_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
# The layouts go-yaml v3 tries: 2006-1-2T15:4:5.999999999Z07:00 (T or t), 2006-1-2 15:4:5.999999999
# and 2006-1-2.
_GO_TIMESTAMP = re.compile(
    r"(?P<y>[0-9]{4})-(?P<m>[0-9]{1,2})-(?P<d>[0-9]{1,2})"
    r"(?:(?:[Tt](?P<H>[0-9]{1,2}):(?P<M>[0-9]{1,2}):(?P<S>[0-9]{1,2})(?:[.,](?P<f>[0-9]{1,9}))?"
    r"(?P<zone>Z|[-+][0-9]{2}:[0-9]{2}))"
    r"|(?: (?P<H2>[0-9]{1,2}):(?P<M2>[0-9]{1,2}):(?P<S2>[0-9]{1,2})(?:[.,](?P<f2>[0-9]{1,9}))?))?"
)
_INT64, _UINT64 = 2**63, 2**64
_KINDS = {
    _NULL: "null",
    _BOOL: "true or false",
    _INT: "an integer",
    _FLOAT: "a number",
    _TIMESTAMP: "a date or time",
}


def _go_time_text(text: str) -> str | None:
    """What Pulumi makes of a YAML timestamp: Go's time.Time String(), or None when go-yaml
    does not read `text` as a time. A zero offset prints as UTC; any other offset as itself,
    as on a machine whose local time zone is UTC."""
    match = _GO_TIMESTAMP.fullmatch(text)
    if match is None:
        return None
    parts = match.groupdict()
    hour, minute, second = (
        int(parts["H"] or parts["H2"] or 0),
        int(parts["M"] or parts["M2"] or 0),
        int(parts["S"] or parts["S2"] or 0),
    )
    try:
        day = datetime.date(int(parts["y"]), int(parts["m"]), int(parts["d"]))
    except ValueError:
        return None
    if hour > 23 or minute > 59 or second > 59:
        return None
    fraction = (parts["f"] or parts["f2"] or "").rstrip("0")
    zone = parts["zone"] or "Z"
    if zone == "Z" or zone[1:] == "00:00":
        offset = "+0000 UTC"
    else:
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 24 or minutes > 60:
            return None
        offset = f"{zone[0]}{hours:02d}{minutes:02d}"
        offset = f"{offset} {offset}"
    clock = f"{hour:02d}:{minute:02d}:{second:02d}" + (f".{fraction}" if fraction else "")
    return f"{day.isoformat()} {clock} {offset}"


def _go_number(plain: str) -> tuple[str, object] | None:
    match = _GO_INT.fullmatch(plain)
    if match is not None:
        sign, digits = match.groups()
        if digits[:2] in ("0x", "0X", "0o", "0O", "0b", "0B"):
            value = int(digits[2:], {"x": 16, "o": 8, "b": 2}[digits[1].lower()])
        else:
            value = int(digits, 8 if digits.startswith("0") else 10)
        value = -value if sign == "-" else value
        # ParseInt (64 bits), then ParseUint (no sign); past both, go-yaml tries a float.
        if -_INT64 <= value < _INT64 or (not sign and value < _UINT64):
            return _INT, value
    if _GO_FLOAT.fullmatch(plain):
        number = float(plain)
        if not math.isinf(number):
            return _FLOAT, number
    return None


def go_scalar(text: str) -> tuple[str, object]:
    """(tag, value) of a plain scalar, as go-yaml v3's resolve() gives it; a timestamp's value
    is the text the Pulumi CLI hands the program for it."""
    if text in _GO_WORDS:
        return _GO_WORDS[text]
    first = text[:1]
    if first == "." and "_" not in text:
        try:
            return _FLOAT, float(text)
        except ValueError:
            return _STR, text
    if first and first in "+-0123456789":
        time_text = _go_time_text(text)
        if time_text is not None:
            return _TIMESTAMP, time_text
        number = _go_number(text.replace("_", ""))
        if number is not None:
            return number
    return _STR, text


class _Refused(ConstructorError):
    """A value or key the CLI would refuse (or this reader does not take), with what is valid
    instead; `where` is its node or its position."""

    def __init__(self, problem: str, where: Any, valid: str) -> None:
        mark = where.start_mark if isinstance(where, Node) else where
        super().__init__(problem=problem, problem_mark=mark)
        self.valid = valid


# --- limits: nesting, aliases, tags -------------------------------------------------------------

# Lists and mappings nest at most this deep, aliases expanded: the reader and the program recurse
# once per level. go-yaml allows 10,000 (scannerc.go, max_flow_level and max_indents).
MAX_DEPTH = 100


def _too_deep(mark: Any, alias: str | None = None) -> _Refused:
    through = "" if alias is None else f"through the alias *{alias}, "
    return _Refused(
        f"{through}lists and mappings nested more than {MAX_DEPTH} deep, deeper than this "
        "reader supports",
        mark,
        f"at most {MAX_DEPTH} levels (the Pulumi CLI allows 10,000; a stack file needs a few)",
    )


# go-yaml v3 decode.go: alias_ratio_range_low/high and allowedAliasRatio.
_ALIAS_RATIO_LOW, _ALIAS_RATIO_HIGH = 400_000, 4_000_000


def _allowed_alias_ratio(decodes: int) -> float:
    if decodes <= _ALIAS_RATIO_LOW:
        return 0.99
    if decodes >= _ALIAS_RATIO_HIGH:
        return 0.10
    return 0.99 - 0.89 * (decodes - _ALIAS_RATIO_LOW) / (_ALIAS_RATIO_HIGH - _ALIAS_RATIO_LOW)


def _excessive_aliasing(decodes: int, copies: int) -> bool:
    """go-yaml v3's test (decode.go, unmarshal): `decodes` values decoded, `copies` of them
    inside an alias's expansion."""
    return copies > 100 and decodes > 1000 and copies / decodes > _allowed_alias_ratio(decodes)


_SCALAR_TAGS = frozenset((_STR, _INT, _FLOAT, _BOOL, _NULL, _TIMESTAMP, _BINARY))
_TAGS_OF = {
    ScalarNode: _SCALAR_TAGS,
    SequenceNode: frozenset((_SEQ,)),
    MappingNode: frozenset((_MAP,)),
}
_NODE_KINDS = {ScalarNode: "a value", SequenceNode: "a list", MappingNode: "a mapping"}


def _short_tag(tag: str) -> str:
    prefix = "tag:yaml.org,2002:"
    return "!!" + tag.removeprefix(prefix) if tag.startswith(prefix) else tag


def _check_tag(node: Node) -> None:
    tag = str(node.tag)
    kind = next(k for k in _TAGS_OF if isinstance(node, k))
    if tag in _TAGS_OF[kind] or (tag == _MERGE and node.value == "<<"):
        return
    raise _Refused(
        f"{_NODE_KINDS[kind]} tagged {_short_tag(tag)}",
        node,
        "plain values, lists and mappings (the tags read are !!str, !!int, !!float, !!bool, "
        "!!null, !!timestamp, !!binary, !!seq and !!map)",
    )


class _GoYamlScanner(Scanner):
    """Refuses flow nesting past MAX_DEPTH as it reads the `[` or `{`: ruamel's scanner slows
    down with the square of the nesting of a long line."""

    def fetch_flow_collection_start(self, TokenClass: Any, to_push: Any) -> None:
        if self.flow_level >= MAX_DEPTH:
            raise _too_deep(self.reader.get_mark())
        super().fetch_flow_collection_start(TokenClass, to_push)


class _GoYamlComposer(Composer):
    """Composes as ruamel does, and meanwhile: refuses nesting past MAX_DEPTH and tags go-yaml
    would read differently, and counts the values go-yaml v3 would decode (each alias expanded,
    counted once per distinct node) to refuse a document go-yaml refuses for its aliases."""

    def __init__(self, loader: Any = None) -> None:
        super().__init__(loader=loader)
        # go-yaml lets a later anchor of the same name replace an earlier one, silently.
        self.warn_double_anchors = False
        # Per node being composed (the document first): [values decoded, of them copies made
        # by aliases, levels of lists and mappings below it].
        self._open: list[list[int]] = []
        # Per composed node: the node, the values decoding it decodes, its levels.
        self._done: dict[int, tuple[Node, int, int]] = {}
        self._largest_alias: tuple[int, Any] = (0, None)

    def compose_document(self) -> Any:
        self._open, self._done, self._largest_alias = [[1, 0, 0]], {}, (0, None)
        node = super().compose_document()
        decodes, copies, _ = self._open.pop()
        if _excessive_aliasing(decodes, copies):
            raise _Refused(
                f"aliases expand the document to {decodes:,} values, {copies:,} of them copies, "
                "which the Pulumi CLI refuses (go-yaml: document contains excessive aliasing)",
                self._largest_alias[1] or node.start_mark,
                "aliases copying at most 99% of the values (a smaller share past 400,000)",
            )
        return node

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.parser.peek_event()
        if isinstance(event, AliasEvent):
            return self._alias(super().compose_node(parent, index), event)
        collection = isinstance(event, SequenceStartEvent | MappingStartEvent)
        if collection and len(self._open) > MAX_DEPTH:
            raise _too_deep(event.start_mark)
        self._open.append([1, 0, 0])
        node = super().compose_node(parent, index)
        decodes, copies, depth = self._open.pop()
        depth = depth + 1 if collection else 0
        _check_tag(node)
        self._done[id(node)] = (node, decodes, depth)
        self._count(decodes, copies, depth)
        return node

    def _alias(self, node: Node, event: Any) -> Node:
        done = self._done.get(id(node))
        if done is None:
            raise _Refused(
                f"the alias *{event.anchor} is inside the value it names, which the Pulumi CLI "
                f"refuses (go-yaml: anchor '{event.anchor}' value contains itself)",
                event.start_mark,
                "an alias after the end of the value it names",
            )
        _, decodes, depth = done
        if len(self._open) - 1 + depth > MAX_DEPTH:
            raise _too_deep(event.start_mark, event.anchor)
        # go-yaml decodes the alias itself, then the value it names as copies.
        self._count(1 + decodes, decodes, depth)
        if decodes > self._largest_alias[0]:
            self._largest_alias = (decodes, event.start_mark)
        return node

    def _count(self, decodes: int, copies: int, depth: int) -> None:
        counts = self._open[-1]
        counts[0] += decodes
        counts[1] += copies
        counts[2] = max(counts[2], depth)


class _GoYamlResolver(VersionedResolver):
    """Tags plain scalars as go-yaml v3 does, whatever `%YAML` directive the file has."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is ScalarNode and implicit[0] and value != "<<":
            return Tag(suffix=go_scalar(value)[0])
        return super().resolve(kind, value, implicit)


class _GoYamlConstructor(SafeConstructor):
    """Values as go-yaml v3 decodes them into interface{}, keys checked as it checks them."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        # go-yaml compares the keys as written (merged keys aside): `a` twice is an error.
        if isinstance(node, MappingNode):
            first_seen: dict[str, Node] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, ScalarNode):
                    raise _Refused(
                        f"a key that is a {key_node.id}", key_node, "keys that are plain values"
                    )
                if key_node.tag == _MERGE:
                    continue
                earlier = first_seen.setdefault(key_node.value, key_node)
                if earlier is not key_node:
                    raise _Refused(
                        f"the key {key_node.value!r} is given twice (first on line "
                        f"{earlier.start_mark.line + 1})",
                        key_node,
                        "each key once, as the Pulumi CLI requires",
                    )
        return super().construct_mapping(node, deep=deep)

    def construct_go_scalar(self, node: Any) -> Any:
        text = self.construct_scalar(node)
        tag, value = go_scalar(text)
        wanted = str(node.tag)
        if tag != wanted:
            if not (wanted == _FLOAT and type(value) is int):
                kind = _KINDS.get(wanted, wanted)
                tag_name = "!!" + wanted.rsplit(":", 1)[-1]
                raise _Refused(f"{text!r} (tagged {tag_name}) is not {kind}", node, kind)
            value = float(value)
        if isinstance(value, float) and not math.isfinite(value):
            raise _Refused(
                f"{text} cannot be handed to a program (JSON has no infinity or NaN)",
                node,
                "a finite number",
            )
        return value

    def construct_go_binary(self, node: Any) -> str:
        """go-yaml decodes a !!binary value into its bytes, as a Go string: the CLI hands the
        program that text, which must be UTF-8 (the CLI cannot send other bytes)."""
        text = self.construct_scalar(node)
        try:
            # Go's base64.StdEncoding skips line breaks, and nothing else.
            data = base64.b64decode(text.replace("\r", "").replace("\n", ""), validate=True)
        except binascii.Error:
            raise _Refused(
                "!!binary value contains invalid base64 data", node, "base64, padded with ="
            ) from None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise _Refused(
                "a !!binary value whose bytes are not UTF-8 text, which the Pulumi CLI cannot "
                "hand to the program",
                node,
                "text (or !!binary of UTF-8 text)",
            ) from None


for _tag in (_NULL, _BOOL, _INT, _FLOAT, _TIMESTAMP):
    _GoYamlConstructor.add_constructor(_tag, _GoYamlConstructor.construct_go_scalar)
_GoYamlConstructor.add_constructor(_BINARY, _GoYamlConstructor.construct_go_binary)
# `<<` is a merge only as a key (the constructor merges those first); as a value it is text.
_GoYamlConstructor.add_constructor(_MERGE, SafeConstructor.construct_scalar)


# --- reading ----------------------------------------------------------------------------------


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise StackFileError(
            path, None, f"cannot be read ({err.strerror})", "a readable file"
        ) from None


def _text(path: Path, data: bytes) -> str:
    """The file's text: UTF-8 (a byte order mark is dropped, as the CLI drops it), or UTF-16
    with a byte order mark, which the CLI also reads."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise StackFileError(path, None, "not valid UTF-16", "a UTF-8 text file") from None
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise StackFileError(
            path, line, f"byte 0x{data[err.start]:02x} is not UTF-8", "a UTF-8 text file"
        ) from None


def _read_error(path: Path, text: str, err: YAMLError) -> StackFileError:
    if isinstance(err, ReaderError):
        return StackFileError(
            path,
            text.count("\n", 0, err.position) + 1,
            f"character #x{err.character:04x} is not allowed in YAML",
            "valid YAML",
        )
    if isinstance(err, ComposerError) and "single document" in str(err.context):
        return StackFileError(
            path,
            err.problem_mark.line + 1,
            "a second YAML document (`---`)",
            "one document: the Pulumi CLI reads the first and ignores the rest",
        )
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    line = None if mark is None else mark.line + 1
    if isinstance(err, MarkedYAMLError):
        problem = " ".join(str(err.problem or err.context or err).split())
        if isinstance(err, _Refused):
            return StackFileError(path, line, problem, err.valid)
        context = " ".join(str(err.context or "").split())
        if context and context != problem:
            problem = f"{problem} ({context})"
        return StackFileError(path, line, problem, "valid YAML")
    return StackFileError(path, line, " ".join(str(err).split()), "valid YAML")


def _compose(path: Path, data: bytes | None = None) -> tuple[Any, Node | None]:
    """The file's one document (`data`, if given, is its content), and its node (for line
    numbers)."""
    text = _text(path, _read(path) if data is None else data)
    yaml = YAML(typ="safe", pure=True)
    yaml.version = (1, 2)
    yaml.Resolver = _GoYamlResolver
    yaml.Scanner = _GoYamlScanner
    yaml.Composer = _GoYamlComposer
    yaml.Constructor = _GoYamlConstructor
    try:
        node = yaml.compose(text)
        if node is None:
            return None, None
        return yaml.constructor.construct_document(node), node
    except YAMLError as err:
        raise _read_error(path, text, err) from None
    except RecursionError:  # not expected within MAX_DEPTH; a line rather than a traceback
        raise StackFileError(
            path, None, "nested deeper than this reader supports", f"at most {MAX_DEPTH} levels"
        ) from None


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    kinds = {bool: "a boolean", int: "a number", float: "a number", str: "text"}
    return f"{kinds.get(type(value), type(value).__name__)} ({value!r})"


def _line(node: Node | None) -> int | None:
    return None if node is None else node.start_mark.line + 1


def _mapping(
    path: Path, valid: str, data: bytes | None = None
) -> tuple[dict[str, Any], Node | None]:
    """The file's mapping (empty for an empty file) and its node, or a StackFileError."""
    document, node = _compose(path, data)
    if document is None and node is None:
        return {}, None
    if not isinstance(document, dict):
        raise StackFileError(
            path, _line(node), f"the file holds {_kind(document)}, not a mapping", valid
        )
    return document, node


def load_yaml(path: Path, data: bytes | None = None) -> dict[str, Any]:
    """Pulumi.yaml (or any project file) as the CLI reads it: a mapping, or a StackFileError
    naming the file, the line and the problem."""
    valid = "a mapping of settings, e.g. `name: ecr-ptc` on its own line"
    return _mapping(path, valid, data)[0]


def _config_node(node: Node | None) -> Node | None:
    if isinstance(node, MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.value == CONFIG:
                return value_node if isinstance(value_node, Node) else None
    return None


def _go_key(key: Any) -> str:
    """A key as the CLI spells it: Go's %v of the value go-yaml gives."""
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "<nil>"
    if isinstance(key, float):
        short = format(key, "g")
        return short if float(short) == key else repr(key)
    return str(key)


def stack_file_config(project_dir: Path, stack: str) -> dict[str, Any]:
    """The `config:` of `Pulumi.<stack>.yaml`: keys fully qualified, values as go-yaml gives
    them (a timestamp as the CLI's text for it), a null or blank value as "" (as the CLI holds
    it)."""
    path = stack_file(project_dir, stack)
    if not path.is_file():
        raise ConfigError(
            "stack", stack, f"the name of a stack file in {project_dir} ({path.name} is missing)"
        )
    document, node = _mapping(
        path, "a stack file is a mapping: `config:` followed by indented `key: value` lines"
    )
    config = document.get(CONFIG)
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise StackFileError(
            path,
            _line(_config_node(node)),
            f"`config:` holds {_kind(config)}, not a mapping",
            "`config:` followed by indented `key: value` lines, e.g. `  aws:region: us-east-1`",
        )
    # The CLI holds a top-level null or blank value as "" (loaders.go, checkForEmptyConfig).
    return {qualify(_go_key(k)): "" if v is None else v for k, v in config.items()}


def project_defaults(project_dir: Path = PROJECT_DIR) -> dict[str, Any]:
    """The defaults Pulumi.yaml declares, which the CLI applies to keys a stack leaves unset."""
    path = project_dir / PROJECT_FILE
    # Parsed once per content: every planned stack (and fleet member) needs them.
    return copy.deepcopy(_project_defaults(path, _read(path)))


@functools.lru_cache(maxsize=16)
def _project_defaults(path: Path, data: bytes) -> dict[str, Any]:
    declarations = load_yaml(path, data).get(CONFIG) or {}
    if not isinstance(declarations, dict):
        raise StackFileError(
            path, None, f"`config:` holds {_kind(declarations)}", "a mapping of key declarations"
        )
    return {
        qualify(_go_key(key)): declaration["default"]
        for key, declaration in declarations.items()
        # A null default is no default (pkg/workspace/config.go, mergeConfig).
        if isinstance(declaration, dict) and declaration.get("default") is not None
    }


# --- what the program receives ------------------------------------------------------------------


def _go_value(value: Any) -> Any:
    """A value as Go's encoding/json reads it back: a float with no fraction below 1e21 is
    written without one (1e3 -> 1000), so the program reads an integer, as from the CLI."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    if isinstance(value, Mapping):
        return {_go_key(k): _go_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_go_value(v) for v in value]
    return value


def _go_json(value: Any) -> str:
    return json.dumps(_go_value(value))


def as_cli_strings(values: Mapping[str, Any]) -> dict[str, str]:
    """Values as the CLI hands them to a program: strings, "" for a null (as for a blank value
    in a stack file), JSON for everything else."""
    return {
        k: v if isinstance(v, str) else "" if v is None else _go_json(v) for k, v in values.items()
    }


def cli_config(values: Mapping[str, Any], project_dir: Path = PROJECT_DIR) -> dict[str, str]:
    """What the program receives for a stack with these config values."""
    return as_cli_strings({**project_defaults(project_dir), **values})


def cli_yaml_text(document: Mapping[str, Any]) -> str:
    """A stack file or Pulumi.yaml that the CLI reads back as exactly `document`: JSON, which is
    YAML whose every string is quoted (an unquoted 012345678901 would reach the CLI as a
    number)."""
    return json.dumps(document, indent=2) + "\n"
