"""train.py on recordings: extract (map) -> fit normalisation on train -> normalise -> encode, and the provenance
every run records (feature extractor, COVAREP, synthetic, none)."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import dataset_script
import numpy as np
import pytest
from huggingface_hub import HfApi, hf_hub_download
from helpers import TIMINGS, TONE, recordings, timed
from transformers import pipeline

from cmbert_hf import CMBertFeatureExtractor, CMBertSentimentPipeline
from cmbert_hf import alignment_cmbert as alignment
from cmbert_hf import feature_extraction_cmbert as feature_extraction
from cmbert_hf import recipe
from cmbert_hf.run_folder import ArgumentError
from cmbert_hf.feature_extraction_cmbert import DEFAULT_FEATURES
from cmbert_hf.pipeline_cmbert import TASK
from dataset_script import Mosi


def labelled(split, seed):
    labels = np.random.default_rng(seed).uniform(-3, 3, len(split)).astype(np.float32)
    return split.add_column("label", labels.tolist())


def test_a_run_on_recordings_fits_the_extractor_on_train_and_records_it(
    tiny_checkpoint, dataset_cache, tiny_args, tmp_path, monkeypatch
):
    raw = datasets.DatasetDict(
        train=labelled(recordings(tmp_path, 6, seed=0), 0),
        validation=labelled(recordings(tmp_path, 3, seed=1), 1),
        test=labelled(recordings(tmp_path, 3, seed=2), 2),
    )
    for split in raw.values():  # what the `recordings` builder's splits say of themselves (`audio_facts` reads it)
        split.info.builder_name, split.info.config_name = "mosi", "recordings"
    monkeypatch.setattr(dataset_script, "load_mosi", lambda *args, **kwargs: raw)
    out = tmp_path / "run"
    recipe.main(tiny_args(tiny_checkpoint, dataset_cache, out, "--num_train_epochs", "1"))

    config = json.loads((out / "config.json").read_text())
    assert config["audio_feature_source"] == "extractor" and config["audio_feature_names"] == list(DEFAULT_FEATURES)
    assert config["audio_feature_size"] == len(DEFAULT_FEATURES)
    saved = json.loads((out / "processor_config.json").read_text())
    assert saved["audio_feature_source"] == "extractor"
    # The statistics are those of the train split's words only, computed here from the files directly.
    extractor = CMBertFeatureExtractor()
    train_rows = np.concatenate([extractor.word_features(row["audio"], timed(row)) for row in raw["train"]])
    np.testing.assert_allclose(saved["feature_extractor"]["feature_mean"], train_rows.mean(axis=0), rtol=1e-5)
    # The saved folder scores raw audio (the path `cmbert predict --audio` takes).
    pipe = pipeline(TASK, model=str(out), pipeline_class=CMBertSentimentPipeline, device="cpu")
    result = pipe({"text": "hello there", "audio": TONE, "sampling_rate": 16000, "word_timings": TIMINGS})
    assert -3 <= result["score"] <= 3


@pytest.mark.parametrize(
    "dataset_config, use_audio, expected",
    [
        ("synthetic", True, "synthetic"),
        ("cmbert", True, "covarep"),
        ("mmsa_aligned", True, "covarep"),
        ("mosei_aligned", True, "covarep"),
        ("cmbert", False, "none"),
    ],
)
def test_precomputed_configs_record_their_source(dataset_config, use_audio, expected):
    raw = datasets.DatasetDict(train=datasets.Dataset.from_dict({"text": ["a"], "audio_features": [[[0.0] * 5]]}))
    extractor = CMBertFeatureExtractor()
    facts = Mosi.builder_configs[dataset_config].audio_facts()  # declared by the config, not read from its name
    same, provenance = recipe.featurize_audio(raw, facts, extractor, use_audio, None)
    assert same is raw and provenance == {"audio_feature_source": expected, "audio_feature_names": None}
    assert not extractor.is_fitted


SPOKEN_OPTIONS = "{train_size: 6, validation_size: 3, test_size: 3, cross_modal_fraction: 0.5}"


@pytest.fixture(scope="module")
def spoken_run(tmp_path_factory, tiny_checkpoint, dataset_cache, tiny_args):
    """A tiny run on a tiny `spoken` corpus, trained from its FLAC files; pocketsphinx is made to fail on the first
    training utterance, which must then be spread and counted."""
    from dataset_script.spoken import plan_split

    folder = tmp_path_factory.mktemp("spoken-run")
    corpus, out = folder / "corpus", folder / "run"
    unaligned = plan_split("train", 6, 0, 0.5)[0]["words"]
    align_words, failed = alignment.align_words, []

    def failing(waveform, words, *args, **kwargs):
        if list(words) == unaligned and not failed:  # the train split is extracted first, in one process
            failed.append(words)
            raise alignment.AlignmentError("made to fail by the test")
        return align_words(waveform, words, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(feature_extraction, "align_words", failing)  # the name the extractor calls
        recipe.main(tiny_args(
            tiny_checkpoint, dataset_cache, out, "--dataset_config", "spoken", "--data_dir", str(corpus),
            "--dataset_options", SPOKEN_OPTIONS, "--preprocessing_num_workers", "1", "--num_train_epochs", "1",
        ))  # fmt: skip
    return corpus, out, dataset_cache


def test_a_spoken_run_counts_the_utterances_pocketsphinx_could_not_align(spoken_run):
    corpus, out, _ = spoken_run
    # The other utterances, aligned here from their files (pocketsphinx fails on some espeak utterances itself).
    extractor, expected = CMBertFeatureExtractor(do_normalize=False), {}
    rows = [json.loads(line) for line in (corpus / "metadata.jsonl").read_text().splitlines()]
    for i, row in enumerate(rows):
        timing = "spread" if i == 0 else extractor.word_features(
            str(corpus / row["file_name"]), row["text"].split(), spread_unaligned=True, return_timing=True
        )[1]  # fmt: skip
        expected.setdefault(row["split"], {}).setdefault(timing, 0)
        expected[row["split"]][timing] += 1
    results = json.loads((out / "results.json").read_text())
    alignment_counts = results["alignment"]
    assert alignment_counts["per_split"] == expected and alignment_counts["per_split"]["train"]["spread"] >= 1
    spread = sum(split.get("spread", 0) for split in expected.values())
    assert alignment_counts == {"given": 0, "aligned": 12 - spread, "spread": spread, "mismatched": 0,
                                "proportional": 0, "per_split": expected}
    assert results["audio"]["aligner"] == "pocketsphinx" and results["audio"]["features"] == list(DEFAULT_FEATURES)
    card = (out / "README.md").read_text()
    words = " ".join(card.split())
    assert f"0 given, {12 - spread} aligned, {spread} spread" in words and ", ".join(DEFAULT_FEATURES) in card
    assert "0 whose transcript did not fit its audio (kept)" in words
    assert "spoken MOSI-shaped corpus" in card and "CMU-MOSI" not in card  # the data it was trained on


def test_predict_on_a_test_clip_scores_as_the_evaluation_of_that_clip(spoken_run, capsys, monkeypatch):
    from cmbert_hf import cli

    corpus, out, cache = spoken_run
    rows = [json.loads(line) for line in (corpus / "metadata.jsonl").read_text().splitlines()]
    test_rows = [row for row in rows if row["split"] == "test"]
    evaluated = json.loads((out / "test_predictions.json").read_text())
    scores = []
    for row in test_rows:
        args = ["predict", "--model", str(out), "--trust-remote-code", "--audio", str(corpus / row["file_name"])]
        assert cli.main([*args, "--text", row["text"]]) == 0
        scores.append(json.loads(capsys.readouterr().out)["score"])
    assert scores == pytest.approx(evaluated, abs=1e-5)
    # `cmbert evaluate` extracts the split's features as training did, and scores it as training did.
    assert cli.main(["evaluate", "--model", str(out), "--trust-remote-code", "--data", "spoken", "--data-dir",
                     str(corpus), "--cache-dir", str(corpus.parent / "cache")]) == 0
    printed = capsys.readouterr().out
    assert "spoken test: 3 utterances" in printed and "word timings: 0 given, 3 aligned, 0 spread" in printed
    trained_mae = json.loads((out / "results.json").read_text())["test"]["test_mae"]
    assert printed_mae(printed) == pytest.approx(trained_mae, abs=1e-4)
    # On training's data cache and corpus options it reuses the features training extracted: nothing is extracted.
    calls = []
    monkeypatch.setattr(CMBertFeatureExtractor, "word_features", lambda *args, **kwargs: calls.append(args))
    assert cli.main(["evaluate", "--model", str(out), "--data", "spoken", "--data-dir", str(corpus), "--cache-dir",
                     str(cache), "--dataset-options", SPOKEN_OPTIONS]) == 0
    # Compared within a tolerance: the four printed decimals can round either way across processes.
    assert calls == [] and printed_mae(capsys.readouterr().out) == pytest.approx(trained_mae, abs=1e-4)


def printed_mae(printed):
    return float(next(line for line in printed.splitlines() if line.startswith("| mae |")).split("|")[2])


def test_dataset_options_are_checked():
    assert recipe.dataset_options("{train_size: 8}") == {"train_size": 8}
    assert recipe.dataset_options('{"seed": 2}') == {"seed": 2} and recipe.dataset_options(None) == {}
    with pytest.raises(ArgumentError, match=r"unknown dataset options \['train_sise'\]; MosiConfig / RecordingsConfig's fields"):
        recipe.dataset_options({"train_sise": 8})
    with pytest.raises(ArgumentError, match="must be a mapping"):
        recipe.dataset_options("[1, 2]")


CARD_SNIPPET = re.compile(r"```python\n(.*?)```", re.S)


def test_the_card_of_a_trained_folder_can_be_published_as_written(spoken_run, hub_env, tmp_path):
    corpus, out, _ = spoken_run
    folder = tmp_path / "run"
    shutil.copytree(out, folder)
    from cmbert_hf import cli

    # `cmbert push` renders the card again for the repo it pushes to (train.py's push passes --hub_model_id).
    assert cli.main(["push", str(folder), "--repo-id", "me/cm-bert-spoken"]) == 0
    api = HfApi()
    pushed = api.list_repo_files("me/cm-bert-spoken")
    card = Path(hf_hub_download("me/cm-bert-spoken", "README.md")).read_text()
    assert 'repo = "me/cm-bert-spoken"' in card and "cmbert " not in card  # no CLI that Hub users do not have
    # Every file the card names is one the repo has.
    named = set(re.findall(r"[\w-]+\.(?:json|py|safetensors)\b", card))
    assert {"processor_config.json", "feature_extraction_cmbert.py", "modeling_cmbert.py"} <= named
    assert named <= set(pushed), named - set(pushed)
    # Requirements, the data it heard and what it is not for; no made-up Hub data sets.
    assert re.search(r'pip install "transformers>=\S+" "torch>=\S+" "numpy>=\S+" "scipy>=\S+" "soundfile>=\S+" '
                     r'"pocketsphinx>=\S+"`', card)  # quoted: `>=` unquoted is a shell redirection
    assert "## Intended use and limitations" in card and "synthetic (espeak-ng)" in card
    assert "- real voices: it heard only espeak-ng's synthetic speech" in card
    assert "\ndatasets:" not in card and "CMU-MOSI" not in card and "zadeh2016mosi" not in card
    results = json.loads((folder / "results.json").read_text())
    assert results["training_data"]["speech"] == "synthetic (espeak-ng)"
    assert results["training_data"]["not_for"][0].startswith("real voices")
    # No pushed JSON holds a path of this machine (the encoder's, the data's, the output folder's).
    assert "run_args.json" not in pushed and "training_args.bin" not in pushed
    for name in (name for name in pushed if name.endswith(".json")):
        text = Path(hf_hub_download("me/cm-bert-spoken", name)).read_text()
        for local in (str(tmp_path.parent), str(corpus), str(Path.home()), sys.prefix):
            assert local not in text, (name, local)
    # The card's usage runs as written against the pushed repo, in a fresh process without this package, given a
    # recording (the example's clip.wav: a test clip, with its own transcript).
    row = next(json.loads(line) for line in (corpus / "metadata.jsonl").read_text().splitlines())
    shutil.copy(corpus / row["file_name"], tmp_path / "clip.wav")
    code = CARD_SNIPPET.search(card).group(1).replace("i really liked this movie", row["text"])
    code = 'import sys\nsys.modules["cmbert_hf"] = None\n' + code + "\nprint(score, pipe.__class__.__module__)\n"
    ran = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=hub_env, capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-3000:]
    score, module = ran.stdout.split()[-2:]
    assert -3 <= float(score) <= 3 and module.startswith("transformers_modules.")
