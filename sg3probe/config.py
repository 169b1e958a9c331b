"""Typed configuration: layered TOML sources, dataclass validation, a TOML writer, and a
schema's defaults as commented TOML.

Precedence, lowest first: the schema's defaults < ``[tool.sg3probe]`` in ./pyproject.toml <
``--config run.toml`` < ``--set key=value`` (dotted keys, values parsed as TOML literals).
The resolved config is written back as config.toml, which reproduces the run with ``--config``.
"""
from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import io
import json
import math
import re
import textwrap
import tokenize
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

from sg3probe.errors import ConfigError

PYPROJECT_TABLE = ("tool", "sg3probe")


@dataclass(frozen=True)
class ConfigLayer:
    """One source of settings: where it came from, and the nested dict it holds."""

    source: str  # "pyproject.toml [tool.sg3probe]", "run.toml", "--set a.b=1"
    values: dict[str, Any]


@dataclass(frozen=True)
class ResolvedConfig:
    """The validated config object and the layers it was merged from, lowest first."""

    config: Any  # an instance of the schema dataclass
    layers: tuple[ConfigLayer, ...]

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self.config)


# -- reading ------------------------------------------------------------------------------------

def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file; a missing file or a syntax error is a one-line ConfigError."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {error}") from None


def pyproject_settings(directory: str | Path = ".") -> dict[str, Any]:
    """The ``[tool.sg3probe]`` table of directory/pyproject.toml, or {} when there is none."""
    path = Path(directory) / "pyproject.toml"
    if not path.is_file():
        return {}
    table: Any = load_toml(path)
    for key in PYPROJECT_TABLE:
        table = table.get(key, {}) if isinstance(table, dict) else {}
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.sg3probe] must be a table")
    return table


def parse_set(assignment: str) -> dict[str, Any]:
    """Turn ``a.b=value`` into ``{"a": {"b": value}}``; value is a TOML literal, else a string."""
    key, sep, text = assignment.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {assignment!r} is not of the form key=value (e.g. --set seed=3)")
    try:
        value = tomllib.loads(f"value = {text.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        value = text.strip()  # `--set model=toyfaces` needs no quotes
    parts = key.split(".")
    if any(not part for part in parts):
        raise ConfigError(f"--set {assignment!r}: the key {key!r} has an empty part")
    nested: dict[str, Any] = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        nested = {part: nested}
    return nested


def parse_options(assignments: tuple[str, ...] | list[str], flag: str) -> dict[str, Any]:
    """Repeated ``--flag key=value`` -> {key: value}; values are TOML literals, else strings."""
    options: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, _ = assignment.partition("=")
        if not sep or not key.strip() or "." in key:
            raise ConfigError(f"{flag} {assignment!r} is not of the form key=value (e.g. {flag} checkpoint=model.pt)")
        options.update(parse_set(assignment))
    return options


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge two nested dicts: tables merge key by key, anything else is replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def resolve_config(schema: type, *, config_file: str | Path | None = None,
                   sets: Iterable[str] = (), directory: str | Path = ".") -> ResolvedConfig:
    """Merge defaults < pyproject < config_file < sets and validate the result against `schema`."""
    layers = []
    pyproject = pyproject_settings(directory)
    if pyproject:
        layers.append(ConfigLayer("pyproject.toml [tool.sg3probe]", pyproject))
    if config_file is not None:
        layers.append(ConfigLayer(str(config_file), load_toml(config_file)))
    for assignment in sets:
        layers.append(ConfigLayer(f"--set {assignment}", parse_set(assignment)))
    values: dict[str, Any] = {}
    for layer in layers:
        values = merge(values, layer.values)
    return ResolvedConfig(from_dict(schema, values), tuple(layers))


def with_sections(base: type, sections: Mapping[str, type], name: str = "RunConfig") -> type:
    """A dataclass schema with `base`'s fields plus one table per section (e.g. analyzer Configs)."""
    clashes = {f.name for f in dataclasses.fields(base)} & set(sections)
    if clashes:
        raise ValueError(f"config sections {sorted(clashes)} clash with fields of {base.__name__}")
    fields = [(key, section, dataclasses.field(default_factory=section))
              for key, section in sections.items()]
    frozen = base.__dataclass_params__.frozen  # a frozen base only admits a frozen subclass
    return dataclasses.make_dataclass(name, fields, bases=(base,), frozen=frozen)


# -- validation ---------------------------------------------------------------------------------

def from_dict(schema: type, values: Mapping[str, Any], *, where: str = "") -> Any:
    """Build the dataclass `schema` from a nested dict, checking every key and type.

    Missing keys take the dataclass defaults; unknown keys and wrong types are ConfigErrors that
    name the dotted key (prefixed by `where`) and what is accepted.
    """
    if not dataclasses.is_dataclass(schema):
        raise TypeError(f"{schema!r} is not a dataclass type")
    if not isinstance(values, Mapping):
        raise ConfigError(f"config {_label(where)} must be a table, got {_describe(values)}")
    fields = {f.name: f for f in dataclasses.fields(schema) if f.init}
    hints = typing.get_type_hints(schema)
    for key in values:
        if key not in fields:
            raise ConfigError(_unknown_key_message(_join(where, key), key, sorted(fields), where))
    kwargs = {key: _convert(hints[key], value, _join(where, key)) for key, value in values.items()}
    try:
        return schema(**kwargs)
    except TypeError as error:  # a field without default that no layer set
        raise ConfigError(f"config {_label(where)}: {error}") from None
    except ValueError as error:  # a __post_init__ check of the schema
        raise ConfigError(f"config {_label(where)}: {error}") from None


def _unknown_key_message(dotted: str, key: str, accepted: list[str], where: str) -> str:
    table = f" in [{where}]" if where else ""
    close = difflib.get_close_matches(key, accepted, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return (f"unknown config key {dotted!r}{hint}; the accepted keys{table} are: "
            f"{', '.join(accepted) or 'none'}")


def _convert(hint: Any, value: Any, key: str) -> Any:
    """Check `value` against the type `hint`, converting where TOML cannot say it (Path, tuple)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin is typing.Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        for member in (a for a in args if a is not type(None)):
            try:
                return _convert(member, value, key)
            except ConfigError:
                continue
        raise _type_error(key, hint, value)
    if origin is typing.Literal:
        if any(value == a and type(value) is type(a) for a in args):  # True is not 1 here
            return value
        raise ConfigError(f"config key {key!r} must be one of {', '.join(map(repr, args))}, "
                          f"got {value!r}")
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where=key)
    if origin in (list, tuple, set, frozenset) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _type_error(key, hint, value)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"config key {key!r} must have {len(args)} items, got {len(value)}")
            return tuple(_convert(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        items = [_convert(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
        container = origin or hint
        return items if container is list else container(items)
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise _type_error(key, hint, value)
        item = args[1] if args else Any
        return {k: _convert(item, v, f"{key}.{k}") for k, v in value.items()}
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif hint is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
    elif isinstance(hint, type) and isinstance(value, hint):
        return value
    raise _type_error(key, hint, value)


def _type_error(key: str, hint: Any, value: Any) -> ConfigError:
    return ConfigError(f"config key {key!r} must be {_type_name(hint)}, got {_describe(value)}")


def _type_name(hint: Any) -> str:
    if hint is type(None):
        return "None"
    if isinstance(hint, type) and not typing.get_args(hint):
        return hint.__name__
    return str(hint).replace("typing.", "")


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _label(where: str) -> str:
    return f"[{where}]" if where else "(top level)"


# -- writing ------------------------------------------------------------------------------------

def to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as a nested dict of TOML-writable values (Path -> str, None dropped)."""
    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                    if getattr(value, f.name) is not None}
        if isinstance(value, Mapping):
            return {str(k): plain(v) for k, v in value.items() if v is not None}
        if isinstance(value, (list, tuple, set, frozenset)):
            items = sorted(value) if isinstance(value, (set, frozenset)) else value
            return [plain(v) for v in items]
        if isinstance(value, Path):
            return str(value)
        return value

    return plain(config)


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def dumps_toml(values: Mapping[str, Any]) -> str:
    """Write a nested dict of strings, numbers, booleans, lists and tables as TOML text.

    Enough for configs; ``tomllib.loads(dumps_toml(d)) == d`` for such dicts. None has no TOML
    form and is rejected: drop it first (``to_dict`` does).
    """
    lines: list[str] = []
    _write_table(lines, (), values)
    return "\n".join(lines).lstrip("\n") + "\n"


def _write_table(lines: list[str], path: tuple[str, ...], table: Mapping[str, Any]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, Mapping)}
    tables = {k: v for k, v in table.items() if isinstance(v, Mapping)}
    if path and (scalars or not tables):
        lines.append("")
        lines.append("[" + ".".join(_key(p) for p in path) + "]")
    for key, value in scalars.items():
        lines.append(f"{_key(key)} = {_value(value, '.'.join(path + (key,)))}")
    for key, value in tables.items():
        _write_table(lines, path + (key,), value)


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _string(key)


def _string(text: str) -> str:
    # JSON string escapes are a subset of TOML basic-string escapes; DEL is the one JSON leaves raw.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(value: Any, key: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v, key) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_value(v, key)}" for k, v in value.items()) + "}"
    raise TypeError(f"config key {key!r}: {_describe(value)} has no TOML form")


def defaults_toml(schema: type) -> str:
    """The defaults of a dataclass schema as TOML with the comments of its source: each setting
    keeps the comment on its line and the comment lines above it. A setting whose default is None
    (it has no TOML form) is a commented-out line saying so."""
    lines: list[str] = []
    _write_defaults(lines, (), schema)
    return "\n".join(lines).lstrip("\n") + "\n"


def _write_defaults(lines: list[str], path: tuple[str, ...], schema: type) -> None:
    comments: dict[str, FieldComments] = {}
    for cls in reversed(schema.__mro__):  # a field's comments are in the class that declares it
        comments.update(field_comments(cls) if dataclasses.is_dataclass(cls) else {})
    defaults = {f.name: _default(f) for f in dataclasses.fields(schema)}
    nested = [name for name, value in defaults.items() if dataclasses.is_dataclass(value)]
    if path:
        lines.append("")
        lines.append("[" + ".".join(_key(p) for p in path) + "]")
    for name, value in defaults.items():
        if name in nested:
            continue
        comment = comments.get(name, FieldComments())
        if value is None:
            line = f"# {_key(name)} = (none)"
        else:  # a dict default is an inline table: a [table] here would end this one's settings
            line = f"{_key(name)} = {_value(to_dict(value), '.'.join(path + (name,)))}"
        lines.extend(comment.above)
        lines.append(f"{line}  {comment.trailing}" if comment.trailing else line)
    for name in nested:
        _write_defaults(lines, path + (name,), type(defaults[name]))


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


@dataclass(frozen=True)
class FieldComments:
    """The comments of one dataclass field in its source, each as written ("# ...")."""

    above: tuple[str, ...] = ()  # the comment-only lines between the previous field and this one
    trailing: str = ""  # the comment on the field's own (last) line


def field_comments(schema: type) -> dict[str, FieldComments]:
    """{field name: its comments} from the source of the class; {} where it is not available."""
    try:
        source = textwrap.dedent(inspect.getsource(schema))
    except (OSError, TypeError):
        return {}
    comment_at: dict[int, str] = {}
    code_lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comment_at[token.start[0]] = token.string.rstrip()
        elif token.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            code_lines.add(token.start[0])
    comments, previous_end = {}, 1  # line 1: the class statement
    for node in ast.parse(source).body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            above = tuple(comment_at[line] for line in range(previous_end + 1, node.lineno)
                          if line in comment_at and line not in code_lines)
            comments[node.target.id] = FieldComments(above, comment_at.get(node.end_lineno, ""))
        previous_end = node.end_lineno
    return comments


def write_config(path: str | Path, config: Any) -> Path:
    """Write a config (dataclass or nested dict) as TOML that `--config` reads back."""
    path = Path(path)
    values = to_dict(config) if dataclasses.is_dataclass(config) else to_dict(dict(config))
    path.write_text(dumps_toml(values), encoding="utf-8")
    return path
