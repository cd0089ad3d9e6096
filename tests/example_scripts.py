"""Loads a script of examples/ (or tuning/) as a module, so tests call its functions in-process."""

import importlib.util
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(REPO, "examples")
TUNING = os.path.join(REPO, "tuning")


def load_script(name, folder=EXAMPLES):
    """Imports `<folder>/<name>.py` under the module name `name`; returns the module.

    As when the script runs, `folder` is first on `sys.path` while it is imported, so that
    its imports of the modules beside it (`import experiments`) resolve.
    """
    spec = importlib.util.spec_from_file_location(name, os.path.join(folder, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(folder)
    return module
