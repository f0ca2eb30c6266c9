"""The package imports lightly: `import cmbert_hf` and `cmbert --help` load none of the heavy libraries, and the
Auto classes still learn `cmbert` once transformers is imported."""

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "librosa", "sklearn", "datasets", "pocketsphinx", "pandas", "matplotlib")
REPORT = f"import json, sys; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"


def _loaded(code: str) -> list[str]:
    result = subprocess.run([sys.executable, "-c", f"{code}\n{REPORT}"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.parametrize(
    "code",
    [
        "import cmbert_hf",
        "import contextlib, io\nfrom cmbert_hf.cli import main\nwith contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n        main(['--help'])\n    except SystemExit:\n        pass",
    ],
    ids=["import", "cmbert --help"],
)
def test_nothing_heavy_is_imported(code):
    assert _loaded(code) == []


@pytest.mark.parametrize(
    "imports",
    [
        "import cmbert_hf\nimport transformers",
        "import transformers\nimport cmbert_hf",
        # transformers is first imported from inside the half-initialised configuration module
        "from cmbert_hf.modeling_cmbert import CMBertModel",
    ],
    ids=["cmbert_hf first", "transformers first", "a submodule first"],
)
def test_the_auto_classes_know_cmbert_after_import(imports):
    code = imports + (
        "\nfrom transformers import AutoConfig, AutoProcessor\nfrom transformers.pipelines import PIPELINE_REGISTRY"
        "\nassert type(AutoConfig.for_model('cmbert')).__name__ == 'CMBertConfig'"
        "\nassert 'multimodal-sentiment-analysis' in PIPELINE_REGISTRY.get_supported_tasks()"
    )
    _loaded(code)


def test_cmbert_train_is_the_recipe(capsys):
    from cmbert_hf.cli import main

    assert main(["train", "--config", "configs/demo.yml"]) == 1
    assert capsys.readouterr().err == "cmbert train: error: --config configs/demo.yml: no such file.\n"
