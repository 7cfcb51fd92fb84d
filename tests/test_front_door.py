"""The front door: ``import wiseft_lib as wf`` gives the names most users need, and its example runs."""
import subprocess
import sys

import pytest

import wiseft_lib


def test_every_front_door_name_resolves_to_the_object_of_its_module():
    import importlib

    for name, module in wiseft_lib._FRONT_DOOR.items():
        defined_as = wiseft_lib._DEFINED_AS.get(name, name)
        assert getattr(wiseft_lib, name) is getattr(importlib.import_module(module), defined_as), name
    assert set(wiseft_lib.__all__) == {"__version__", *wiseft_lib._FRONT_DOOR}
    assert "create_model" in dir(wiseft_lib)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        wiseft_lib.nope


def test_fine_tune_is_the_engine_even_after_its_subpackage_is_imported():
    import wiseft_lib.finetune  # sets the package attribute `finetune` to the subpackage
    from wiseft_lib.finetune.engine import finetune

    assert wiseft_lib.fine_tune is finetune


def test_importing_the_package_loads_no_model_code():
    done = subprocess.run([sys.executable, "-c", "import sys, wiseft_lib; print('torch' in sys.modules)"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_the_docstring_example_runs_and_scores_the_interpolated_model(fashion_mnist_root, capsys):
    example = wiseft_lib.__doc__.split("::\n\n")[1].split("\n\n")[0]
    code = "\n".join(line[4:] for line in example.splitlines())
    assert "interpolate_weights" in code and "evaluate" in code
    exec(code, {})
    scores = eval(capsys.readouterr().out.strip().splitlines()[-1])  # the printed {'top1': ...}
    assert 10.0 < scores["top1"] <= 100.0  # better than chance on ten classes
