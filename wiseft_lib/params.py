"""Typed parameters: one dataclass per study, checked the same way from every front door.

A study's parameters are a dataclass of :class:`Params` whose fields are declared with
:func:`param` (default + a one-line help). The same checks run whether the values come from
a params file, ``wiseft run STUDY --set KEY=VALUE``, a notebook's ``parameters`` cell (with
papermill's injected values) or Python:

    from dataclasses import dataclass
    from wiseft_lib.params import Params, param

    @dataclass
    class Demo(Params):
        seeds: list[int] = param([0], "one run per seed")
        lr: float = param(1e-3, "learning rate")

    Demo.from_mapping({"seeds": [0, 1], "lr": 3e-4})     # Demo(seeds=[0, 1], lr=0.0003)
    Demo.from_mapping({"seeds": "0,1"})                 # ParamsError: 'seeds' must be a list ... -y
    Demo.from_mapping({"sedes": [0]})                   # ParamsError: unknown ... (did you mean 'seeds'?)
    print(Demo.parameters_cell())                       # the notebook's parameters cell, generated

Unknown keys, wrong types and a list passed as text (``papermill -p seeds 0,1``) are errors
naming the key and the fix. Ints are accepted where floats are expected, and so is YAML 1.1's
exponent-without-dot text (``lr: 1e-3`` loads as a string in PyYAML); "true"/"false" are accepted
as booleans (``papermill -p smoke true`` passes text).
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import re
import textwrap
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

__all__ = ["ParamsError", "Params", "param", "check_fields", "parse_assignment", "IPYTHON_NAMES"]

P = TypeVar("P", bound="Params")
# names a Jupyter kernel defines itself: never parameters
IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}
_FLOAT_TEXT = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


class ParamsError(ValueError):
    """A parameter is unknown or has the wrong type; the message names it and the fix."""


def param(default: Any, help: str) -> Any:
    """A dataclass field with a default (copied per instance if mutable) and a one-line help."""
    meta = {"help": help}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


# ---------------------------------------------------------------- type checks
def _describe(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return "any value"
    if origin in (Union, types.UnionType):
        parts = [_describe(a) for a in args if a is not type(None)]
        return " or ".join(parts) + (" or null/None" if type(None) in args else "")
    if origin in (list, Sequence, tuple):
        return f"a list of {_describe(args[0])}s" if args else "a list"
    if origin in (dict, Mapping):
        return "a mapping (e.g. {key: value})"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


def _list_as_text(key: str, value: str, item: Any = int) -> ParamsError:
    example = {int: "[0, 1, 2]", float: "[0.0, 0.5, 1.0]", str: "[a, b]"}.get(item, "[...]")
    err = ParamsError(
        f"parameter {key!r} must be a list, got the string {value!r}. papermill's -p passes text: give "
        f"lists with -y, e.g. -y '{key}: {example}', or in a params file (-f); on the command line use "
        f"--set '{key}={example}'."
    )
    err.hint = True
    return err


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """``value`` checked against the annotation ``tp`` (and converted where lossless)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(key, value, arg)
            except ParamsError as err:
                errors.append(err)
        hinted = [e for e in errors if getattr(e, "hint", False)]
        raise hinted[0] if hinted else _wrong(key, value, tp)  # a list given as text keeps its hint
    if origin in (list, Sequence, tuple):
        if isinstance(value, str):
            raise _list_as_text(key, value, args[0] if args else None)
        if not isinstance(value, (list, tuple)):
            raise _wrong(key, value, tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ParamsError(f"parameter {key!r} must have {len(args)} entries, got {value!r}")
            return tuple(_coerce(f"{key}[{i}]", v, a) for i, (v, a) in enumerate(zip(value, args)))
        items = [_coerce(f"{key}[{i}]", v, args[0]) if args else v for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise _wrong(key, value, tp)
        vt = args[1] if len(args) == 2 else Any
        return {k: _coerce(f"{key}.{k}", v, vt) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"  # papermill -p passes only True/False as booleans
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _FLOAT_TEXT.match(value.strip()):
            return float(value)  # YAML 1.1 reads 1e-3 as text
    elif tp is str:
        if isinstance(value, str):
            return value
    elif isinstance(tp, type):
        if isinstance(value, tp):
            return value
    else:
        return value
    raise _wrong(key, value, tp)


def _wrong(key: str, value: Any, tp: Any) -> ParamsError:
    return ParamsError(f"parameter {key!r} must be {_describe(tp)}, got {value!r} ({type(value).__name__})")


def check_fields(obj: Any, where: str = "") -> None:
    """Check (and losslessly convert) every field of dataclass ``obj`` against its annotation.

    ``where`` prefixes the message (e.g. the class name) when the caller is not a params file.
    """
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        try:
            setattr(obj, f.name, _coerce(f.name, getattr(obj, f.name), hints[f.name]))
        except ParamsError as err:
            raise ParamsError(f"{where}: {err}" if where else str(err)) from None


def _unknown(unknown: Sequence[str], known: Sequence[str], what: str) -> ParamsError:
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=1)
        hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return ParamsError(f"unknown {what}: {', '.join(hints)}. Known: {', '.join(known)}.")


# ---------------------------------------------------------------- literals for generated cells
def _literal_lines(v: Any, indent: int, start: int = 0, width: int = 116) -> str:
    """``v`` as a Python literal beginning at column ``start``: on one line when it fits in ``width`` columns,
    else one item per line, indented by four from ``indent``."""
    flat = _literal(v)
    if start + len(flat) <= width or not isinstance(v, (Mapping, list)) or not v:
        return flat
    pad = " " * (indent + 4)
    if isinstance(v, Mapping):
        items = []
        for k, x in v.items():
            head = f"{pad}{_literal(k)}: "
            items.append(head + _literal_lines(x, indent + 4, len(head), width))
        return "{\n" + ",\n".join(items) + ",\n" + " " * indent + "}"
    if all(not isinstance(x, (Mapping, list, tuple)) for x in v):  # scalars flow over lines, aligned after "["
        lines, line = [], ""
        for item in (_literal(x) for x in v):
            if line and start + 1 + len(line) + len(item) + 2 > width:
                lines.append(line + ",")
                line = ""
            line = f"{line}, {item}" if line else item
        return "[" + ("\n" + " " * (start + 1)).join(lines + [line]) + "]"
    items = [pad + _literal_lines(x, indent + 4, len(pad), width) for x in v]
    return "[\n" + ",\n".join(items) + ",\n" + " " * indent + "]"


def _literal(v: Any) -> str:
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{_literal(k)}: {_literal(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(_literal(x) for x in v) + "]"
    if isinstance(v, tuple):
        return "(" + ", ".join(_literal(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    return repr(v)


def parse_assignment(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` (the value read as YAML: ``seeds=[0, 1]``, ``n_test=500``, ``pretrained=null``)."""

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ParamsError(f"--set takes KEY=VALUE (e.g. --set 'seeds=[0, 1]'), got {text!r}")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError as err:
        raise ParamsError(f"--set {key.strip()}: {value!r} is not a YAML value ({err})") from None


# ---------------------------------------------------------------- the base class
class Params:
    """Mixin for parameter dataclasses: typed construction from mappings, files and notebooks."""

    def __post_init__(self) -> None:
        check_fields(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    @classmethod
    def from_mapping(cls: type[P], values: Mapping[str, Any], *, source: str = "parameters") -> P:
        """Build from a mapping; unknown keys and wrong types raise :class:`ParamsError`."""
        if not isinstance(values, Mapping):
            raise ParamsError(f"{source} must be a mapping of parameter names to values, got "
                              f"{type(values).__name__}")
        names = cls.field_names()
        unknown = [k for k in values if k not in names]
        if unknown:
            raise _unknown(unknown, names, f"parameter(s) in {source}")
        return cls(**dict(values))

    @classmethod
    def from_yaml(cls: type[P], path: Union[str, Path, None], overrides: Sequence[str] = ()) -> P:
        """A params file (or only defaults with ``path=None``) plus ``KEY=VALUE`` overrides."""

        values: dict[str, Any] = {}
        source = "--set" if overrides else "parameters"
        if path is not None:
            path = Path(path)
            if not path.is_file():
                raise FileNotFoundError(f"params file {path} does not exist; the presets are under params/mini "
                                        f"and params/paper")
            try:
                loaded = yaml.safe_load(path.read_text())
            except yaml.YAMLError as err:
                raise ParamsError(f"{path} is not valid YAML: {err}") from None
            if loaded is not None and not isinstance(loaded, Mapping):
                raise ParamsError(f"{path} must hold a mapping of parameter names to values")
            values, source = dict(loaded or {}), str(path) + (" or --set" if overrides else "")
        for text in overrides:
            key, value = parse_assignment(text)
            values[key] = value
        return cls.from_mapping(values, source=source)

    @classmethod
    def from_notebook(cls: type[P], namespace: Mapping[str, Any], declared: set[str]) -> P:
        """Build from a notebook's globals after papermill injected its parameters.

        ``declared`` is ``set(globals())`` taken at the end of the ``parameters`` cell: a value
        papermill injected under a name that is neither declared there nor a field is an unknown parameter
        (papermill itself only warns, and a typo would silently run the defaults). Names bound to modules,
        classes and functions (the notebook's own imports) are not parameters. Fields the cell does not
        show keep their defaults unless papermill set them.
        """
        names = cls.field_names()
        unknown = sorted(k for k, v in namespace.items() if k not in declared and k not in names
                         and not k.startswith("_") and k not in IPYTHON_NAMES and not callable(v)
                         and not isinstance(v, types.ModuleType))
        if unknown:
            raise _unknown(unknown, names, "notebook parameter(s)")
        missing = [n for n in cls.notebook_fields() if n not in namespace]
        if missing:
            raise ParamsError(f"the notebook's parameters cell lacks {missing}; regenerate it from "
                              f"{cls.__name__}.parameters_cell()")
        return cls.from_mapping({n: namespace[n] for n in names if n in namespace}, source="notebook parameters")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def _repr_markdown_(self) -> str:
        """A notebook shows the parameters as a table: name, value (bold where not the default), meaning."""
        default = type(self)()
        rows = ["| parameter | value | meaning |", "|---|---|---|"]
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = _literal(getattr(self, f.name)).replace("|", "\\|")
            if getattr(self, f.name) != getattr(default, f.name):
                value = f"**{value}**"
            rows.append(f"| `{f.name}` | {value} | {f.metadata.get('help', '')} |")
        return "\n".join(rows)

    @classmethod
    def defaults(cls: type[P]) -> P:
        return cls()

    @classmethod
    def notebook_fields(cls) -> list[str]:
        """The fields a notebook's ``parameters`` cell shows: what a user of the study would change. Each base
        class names its own in ``NOTEBOOK_FIELDS``; a study's own fields (declared in its class) are shown too."""
        names = cls.field_names()
        shown = {n for klass in cls.__mro__ for n in vars(klass).get("NOTEBOOK_FIELDS", ())}
        shown |= set(vars(cls).get("__annotations__", {}))
        return [n for n in names if n in shown]

    @classmethod
    def parameters_cell(cls) -> str:
        """The notebook ``parameters`` cell: one ``name = default  # help`` line per shown field; the other
        fields keep their defaults (papermill ``-p`` / ``-f`` still sets any of them)."""
        d = cls.defaults()
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        lines = []
        for name in cls.notebook_fields():
            help_text = fields[name].metadata.get("help", "")
            line = f"{name} = {_literal(getattr(d, name))}" + (f"  # {help_text}" if help_text else "")
            if len(line) > 120:  # the help above, the value one item per line
                above = "".join(f"# {part}\n" for part in textwrap.wrap(help_text, 116))
                line = above + f"{name} = {_literal_lines(getattr(d, name), 0, len(name) + 3)}"
            lines.append(line)
        hidden = len(fields) - len(lines)
        if hidden:
            lines += [f"# {hidden} more parameters keep their defaults: the `params` table below lists them all,",
                      "# and papermill -p NAME VALUE (or a params file) sets any of them"]
        return "\n".join(lines + ["_declared = set(globals())  # what papermill may override (checked next)"])
