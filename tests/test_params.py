"""Typed parameters: one set of checks for params files, --set, notebooks and Python."""
from dataclasses import dataclass
from typing import Any, Optional

import pytest

from wiseft_lib.params import Params, ParamsError, param, parse_assignment


@dataclass
class Demo(Params):
    seeds: list[int] = param([0], "one run per seed")
    lr: float = param(1e-3, "learning rate")
    n: Optional[int] = param(None, "how many (None: all)")
    name: str = param("mini", "a name")
    flag: bool = param(False, "a switch")
    recipe: dict[str, Any] = param({"epochs": 2}, "free-form settings")
    pair: tuple[float, float] = param((0.9, 0.999), "two numbers")


def test_values_are_checked_and_converted_losslessly():
    d = Demo.from_mapping({"seeds": [1, 2], "lr": 3, "n": 5, "pair": [0.5, 1], "flag": "true"})
    assert (d.seeds, d.lr, d.n, d.pair, d.flag) == ([1, 2], 3.0, 5, (0.5, 1.0), True)
    assert isinstance(d.lr, float)
    assert Demo.from_mapping({"lr": "1e-3"}).lr == 1e-3  # PyYAML reads 1e-3 as text
    assert Demo().seeds is not Demo().seeds  # mutable defaults are copied


@pytest.mark.parametrize("values, message", [
    ({"sedes": [0]}, r"unknown parameter\(s\) in parameters: 'sedes' \(did you mean 'seeds'\?\)"),
    ({"seeds": "0,1"}, r"'seeds' must be a list, got the string '0,1'.*-y 'seeds: \[0, 1, 2\]'"),
    ({"seeds": [0, "1"]}, r"'seeds\[1\]' must be an integer, got '1'"),
    ({"n": 2.5}, r"'n' must be an integer or null/None, got 2.5"),
    ({"n": True}, r"'n' must be an integer or null/None, got True"),
    ({"lr": "fast"}, r"'lr' must be a number, got 'fast'"),
    ({"flag": "yes"}, r"'flag' must be true or false, got 'yes'"),
    ({"name": 3}, r"'name' must be a string, got 3"),
    ({"recipe": [1]}, r"'recipe' must be a mapping"),
    ({"pair": [1.0]}, r"'pair' must have 2 entries"),
])
def test_bad_values_name_the_parameter_and_the_fix(values, message):
    with pytest.raises(ParamsError, match=message):
        Demo.from_mapping(values)


def test_params_files_and_overrides(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("seeds: [3]\nlr: 1e-4\n")
    d = Demo.from_yaml(f, ["n=7", "recipe={epochs: 5}"])
    assert (d.seeds, d.lr, d.n, d.recipe) == ([3], 1e-4, 7, {"epochs": 5})
    with pytest.raises(ParamsError, match=f"unknown parameter.*in {f} or --set: 'nn'"):
        Demo.from_yaml(f, ["nn=3"])
    f.write_text("seeds: [3]\nn_tset: 3\n")
    with pytest.raises(ParamsError, match=f"unknown parameter.*in {f}: 'n_tset'"):
        Demo.from_yaml(f)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Demo.from_yaml(tmp_path / "missing.yaml")
    f.write_text("- a list\n")
    with pytest.raises(ParamsError, match="must hold a mapping"):
        Demo.from_yaml(f)
    with pytest.raises(ParamsError, match="KEY=VALUE"):
        parse_assignment("seeds")
    assert parse_assignment("alphas=[0, 0.5]") == ("alphas", [0, 0.5])


def test_generated_parameters_cell_round_trips_through_a_notebook_namespace():
    import json

    cell = Demo.parameters_cell()
    assert 'name = "mini"  # a name' in cell and cell.endswith("_declared = set(globals())  # what papermill may override (checked next)")
    namespace: dict = {}
    exec(cell, namespace)
    namespace.pop("__builtins__")
    assert Demo.from_notebook(namespace, namespace["_declared"]) == Demo()
    # papermill injects values after the cell: known ones override, unknown ones are errors
    injected = {**namespace, "lr": 0.5, "json": json, "Demo": Demo}  # imports are not parameters
    assert Demo.from_notebook(injected, namespace["_declared"]).lr == 0.5
    with pytest.raises(ParamsError, match=r"unknown notebook parameter\(s\): 'n_ame' \(did you mean 'name'\?\)"):
        Demo.from_notebook({**namespace, "n_ame": "x"}, namespace["_declared"])


@dataclass
class Base(Params):
    NOTEBOOK_FIELDS = ("seeds",)

    seeds: list[int] = param([0], "one run per seed")
    lr: float = param(1e-3, "learning rate (hidden: a base field not in NOTEBOOK_FIELDS)")


@dataclass
class Study(Base):
    variants: dict[str, Any] = param({f"variant {i}": {"family": "lr", "e2e": {"lr": 10.0 ** -i, "epochs": i}}
                                      for i in range(6)}, "name -> {family, e2e: recipe fields changed}")
    alphas: list[float] = param([round(0.05 * i, 2) for i in range(21)], "mixing coefficients, the paper's grid")


def test_a_short_parameters_cell_shows_the_studys_own_fields_and_the_named_base_ones():
    assert Study.notebook_fields() == ["seeds", "variants", "alphas"]
    cell = Study.parameters_cell()
    assert "lr =" not in cell and "# 1 more parameters keep their defaults" in cell
    assert all(len(line) <= 120 for line in cell.splitlines())
    assert "# name -> {family, e2e: recipe fields changed}\nvariants = {\n" in cell  # long: help above, one per line
    alphas = cell[cell.index("alphas = ["):].split("]")[0]
    assert alphas.count("\n") == 1 and "\n          0." in alphas  # scalars flow on, aligned after the bracket
    namespace: dict = {}
    exec(cell, namespace)
    namespace.pop("__builtins__")
    assert Study.from_notebook(namespace, namespace["_declared"]) == Study()
    # papermill may still set a hidden field (it is a field, so not unknown)
    assert Study.from_notebook({**namespace, "lr": 0.5}, namespace["_declared"]).lr == 0.5
    with pytest.raises(ParamsError, match=r"unknown notebook parameter\(s\): 'l_r'"):
        Study.from_notebook({**namespace, "l_r": 0.5}, namespace["_declared"])
    stale = {k: v for k, v in namespace.items() if k != "variants"}  # a cell generated before 'variants' existed
    with pytest.raises(ParamsError, match=r"parameters cell lacks \['variants'\]; regenerate it"):
        Study.from_notebook(stale, namespace["_declared"] - {"variants"})


def test_notebooks_show_parameters_as_a_table_with_changes_in_bold():
    table = Demo(seeds=[0, 1])._repr_markdown_()
    assert "| `seeds` | **[0, 1]** | one run per seed |" in table
    assert "| `lr` | 0.001 | learning rate |" in table
