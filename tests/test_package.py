import json
import subprocess
import sys

import pytest

import featviz
from featviz.cli import main

HEAVY = ["matplotlib.pyplot", "sklearn", "cv2", "torchvision", "seaborn", "pandas", "ray", "zarr"]


def test_import_is_lazy():
    code = (
        f"import sys, json, featviz; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_version_and_unknown_attribute():
    assert featviz.__version__.count(".") == 2
    with pytest.raises(AttributeError, match="no_such_name"):
        featviz.no_such_name  # noqa: B018


def test_cli_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"featviz {featviz.__version__}"


def test_cli_help_lists_demo(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "demo" in capsys.readouterr().out


def test_python_dash_m():
    out = subprocess.run(
        [sys.executable, "-m", "featviz", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"featviz {featviz.__version__}"


def test_public_functions_survive_submodule_imports():
    # importing every submodule first must not shadow a same-named public function
    code = (
        "import importlib, pkgutil, featviz\n"
        "for m in pkgutil.iter_modules(featviz.__path__):\n"
        "    if m.name != '__main__': importlib.import_module('featviz.' + m.name)\n"
        "bad = [n for n in featviz.__all__ if n != '__version__' and n not in "
        "featviz._SUBMODULES and type(getattr(featviz, n)).__name__ == 'module']\n"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_public_name_resolves():
    for name in featviz.__all__:
        assert getattr(featviz, name) is not None, name
    assert callable(featviz.capture) and callable(featviz.extract)
    assert callable(featviz.correlation)
