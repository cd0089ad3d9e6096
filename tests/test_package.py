"""What `import keras_rir` loads, and that the README's layout matches the tree."""

import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_import_needs_neither_training_nor_matplotlib():
    """With matplotlib made unimportable, `import keras_rir` works and loads no training code.

    (Keras 3.15 itself imports matplotlib when it is installed, so the check blocks it
    rather than asserting it absent from `sys.modules`.)
    """
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "import keras_rir\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('keras_rir.'))\n"
        "assert 'keras_rir.training' not in sys.modules and 'keras_rir.tuning' not in sys.modules, "
        "loaded\n"
        "from keras_rir import training\n"
        "print(training.PAPER_RECIPE.epochs)\n"
    )
    process = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=600
    )
    assert process.returncode == 0, process.stderr[-3000:]
    assert process.stdout.strip() == "82"


def test_readme_layout_names_only_paths_that_exist():
    with open(os.path.join(REPO, "README.md")) as file:
        readme = file.read()
    layout = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    paths = re.findall(r"`((?:keras_rir|examples|tuning|benchmarks|tests)/[\w./]*)`", layout)
    assert len(paths) >= 10, paths
    missing = [path for path in paths if not os.path.exists(os.path.join(REPO, path))]
    assert not missing
