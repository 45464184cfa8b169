"""Loading a model or data never executes code from it: no pickle, no eval/exec, no dynamic
imports chosen by a file, numpy files read with allow_pickle=False. Checked on the source
(every module of the package) and on the behaviour (a .npy holding a pickled object is refused
by the CLI's loader)."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "qengine"
FORBIDDEN_MODULES = {"pickle", "cPickle", "dill", "marshal", "shelve", "joblib", "cloudpickle"}
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_pickle_eval_or_dynamic_import(path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert not {a.name.split(".")[0] for a in node.names} & FORBIDDEN_MODULES, \
                f"{path}:{node.lineno} imports a pickle-like module"
        elif isinstance(node, ast.ImportFrom):
            assert (node.module or "").split(".")[0] not in FORBIDDEN_MODULES, \
                f"{path}:{node.lineno} imports from a pickle-like module"
        elif isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else (f.attr if isinstance(f, ast.Attribute)
                                                          else "")
            assert not (isinstance(f, ast.Name) and name in FORBIDDEN_CALLS), \
                f"{path}:{node.lineno} calls the builtin {name}()"
            if name == "import_module":
                raise AssertionError(f"{path}:{node.lineno} imports a module chosen at run time")
            if name == "load" and isinstance(f, ast.Attribute) and \
                    getattr(f.value, "id", "") in ("np", "numpy"):
                kw = {k.arg: k.value for k in node.keywords}
                assert "allow_pickle" in kw and isinstance(kw["allow_pickle"], ast.Constant) \
                    and kw["allow_pickle"].value is False, \
                    f"{path}:{node.lineno} np.load without allow_pickle=False"


def test_cli_refuses_a_pickled_npy(tmp_path):
    from qengine.tools.data_files import load_array_file
    path = tmp_path / "calib.npy"
    np.save(path, np.array([{"not": "an array"}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="pickle"):
        load_array_file(str(path))
