"""The `cmbert` predict / evaluate / explain commands on a tiny saved model."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from PIL import Image
from helpers import COVAREP, TEXT_ONLY, TEXTS, TONE, variant, word_features
from speech import ESPEAK_RATE, join

from cmbert_hf.cli import load_pipeline, main
from cmbert_hf.metrics import sentiment_metrics
from dataset_script import load_mosi


@pytest.fixture(scope="module")
def speech(clips, tmp_path_factory):
    """A spoken utterance as a WAV file, its text, and its word timings as a file and as tuples."""
    waveform, timings = join(clips)
    folder = tmp_path_factory.mktemp("speech")
    sf.write(folder / "speech.wav", waveform, ESPEAK_RATE)
    lines = ["word\tstart\tend"] + [f"{word}\t{start}\t{end}" for word, start, end in timings]
    (folder / "words.tsv").write_text("\n".join(lines) + "\n")
    return folder, " ".join(word for word, _, _ in timings), timings


def test_predict_prints_the_score_of_one_utterance(tiny_folder, pipe, tmp_path, capsys):
    features = word_features(TEXTS[0])
    np.save(tmp_path / "feats.npy", features)
    argv = ["predict", "--model", str(tiny_folder), "--text", TEXTS[0], "--features", str(tmp_path / "feats.npy")]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    expected = pipe({"text": TEXTS[0], "audio_features": features})
    assert printed == {**expected, "score": pytest.approx(expected["score"], abs=1e-6)}


@pytest.mark.parametrize("suffix", [".tsv", ".parquet"])
def test_predict_writes_a_row_per_input_of_a_batch_file(tiny_folder, pipe, speech, suffix, tmp_path, capsys):
    folder, spoken, timings = speech
    np.save(folder / "feats.npy", word_features(TEXTS[1]))
    rows = [
        {"text": TEXTS[0], "audio": "", "timings": "", "features": ""},
        {"text": TEXTS[1], "audio": "", "timings": "", "features": "feats.npy"},
        {"text": spoken, "audio": "speech.wav", "timings": "words.tsv", "features": ""},
    ]
    pd.DataFrame(rows).to_csv(folder / "batch.tsv", sep="\t", index=False)
    output = tmp_path / f"predictions{suffix}"
    argv = ["predict", "--model", str(tiny_folder), "--input", str(folder / "batch.tsv"), "--output", str(output)]
    assert main(argv) == 1  # row 0 has no audio: refused by a model trained with audio, before anything is written
    assert f"batch.tsv, row 0: This model was trained with audio" in capsys.readouterr().err and not output.exists()
    assert main([*argv, "--text-only"]) == 0

    table = pd.read_csv(output, sep="\t", keep_default_na=False) if suffix == ".tsv" else pd.read_parquet(output)
    assert list(table.columns) == ["text", "audio", "timings", "features", "score", "label", "polarity"]
    assert table["text"].tolist() == [row["text"] for row in rows]
    expected = pipe([
        TEXTS[0],
        {"text": TEXTS[1], "audio_features": word_features(TEXTS[1])},
        {"text": spoken, "audio": str(folder / "speech.wav"), "word_timings": timings},
    ])  # fmt: skip
    assert table["score"].tolist() == pytest.approx([r["score"] for r in expected], abs=1e-5)
    assert table["label"].tolist() == [r["label"] for r in expected]
    assert table["polarity"].tolist() == [r["polarity"] for r in expected]
    labels = pd.Series([r["label"] for r in expected]).value_counts()
    summary = f"wrote 3 predictions to {output} (2 with audio, 1 text only; "
    assert capsys.readouterr().out.strip().splitlines()[-1] == summary + ", ".join(f"{n} {k}" for k, n in labels.items()) + ")"


def test_evaluate_prints_the_metrics_of_a_split(tiny_folder, pipe, tmp_path_factory, capsys):
    cache = tmp_path_factory.mktemp("datasets-cache")
    argv = ["evaluate", "--model", str(tiny_folder), "--data", "synthetic", "--cache-dir", str(cache)]
    assert main([*argv, "--split", "validation", "--max-samples", "12", "--batch-size", "5"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    model = "cmbert_hf.modeling_cmbert.CMBertForSequenceClassification"
    assert lines[0].startswith(f"synthetic validation: 12 utterances; {model}")
    printed = {line.split("|")[1].strip(): float(line.split("|")[2]) for line in lines[3:]}

    rows = load_mosi("synthetic", cache_dir=cache)["validation"].select(range(12))
    scores = [pipe({"text": row["text"], "audio_features": row["audio_features"]})["score"] for row in rows]
    expected = sentiment_metrics(scores, rows["label"])
    assert printed == pytest.approx(expected, abs=1e-4)


def test_trust_remote_code_runs_the_folders_own_code(tiny_folder, tmp_path_factory, capsys):
    # transformers' Auto classes would pick the classes this package registers on import; the flag must not.
    pipe = load_pipeline(str(tiny_folder), trust_remote_code=True)
    for part in (pipe, pipe.model, pipe.processor, pipe.processor.feature_extractor, pipe.processor.tokenizer):
        assert not type(part).__module__.startswith("cmbert_hf"), type(part)
    assert type(pipe.model).__module__.startswith("transformers_modules.")
    cache = tmp_path_factory.mktemp("datasets-cache")
    argv = ["evaluate", "--data", "synthetic", "--cache-dir", str(cache), "--split", "validation"]
    argv += ["--max-samples", "12"]
    assert main([argv[0], "--model", str(tiny_folder), *argv[1:]]) == 0
    local = capsys.readouterr().out.splitlines()
    assert main([argv[0], "--model", str(tiny_folder), "--trust-remote-code", *argv[1:]]) == 0
    remote = capsys.readouterr().out.splitlines()
    assert remote[0].count("transformers_modules.") == 3 and "cmbert_hf" not in remote[0]
    assert remote[1:] == local[1:]  # the same metrics table


def test_explain_writes_a_png(tiny_folder, tmp_path, capsys):
    out = tmp_path / "attention.png"
    assert main(["explain", "--model", str(tiny_folder), "--text", TEXTS[1], "--out", str(out), "--text-only"]) == 0
    with Image.open(out) as image:
        assert image.format == "PNG" and min(image.size) > 100
    assert capsys.readouterr().out.strip() == f"wrote {out}"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["predict", "--text", "good", "--features", "{tmp}/missing.npy"], "file not found: {tmp}/missing.npy"),
        (["predict", "--text", "good", "--timings", "{tmp}/words.tsv"], "without the audio"),
        (["predict", "--input", "{tmp}/missing.tsv", "--output", "{tmp}/out.tsv"], "file not found: {tmp}/missing.tsv"),
        (["predict", "--input", "{tmp}/in.tsv", "--output", "{tmp}/out.csv"], "must end in .tsv or .parquet"),
        (["predict", "--input", "{tmp}/no_text.tsv", "--output", "{tmp}/out.tsv"], "has no `text` column"),
        (["predict", "--input", "{tmp}/blank.tsv", "--output", "{tmp}/out.tsv"], "{tmp}/blank.tsv, row 1: no text"),
        (["predict", "--input", "{tmp}/wide.tsv", "--output", "{tmp}/out.tsv", "--text-only"],
         "{tmp}/wide.tsv, row 1: audio features of sample 0 must have shape (n, 5)"),
        (["predict", "--input", "{tmp}/in.tsv"], "--input needs --output"),
        (["predict"], "pass either --text"),
        (["predict", "--input", "{tmp}/in.tsv", "--output", "{tmp}/o.tsv", "--audio", "{tmp}/a.wav"], "go with --text"),
        (["explain", "--text", "good", "--audio", "{tmp}/missing.wav", "--out", "{tmp}/f.png"], "file not found"),
        (["evaluate", "--data", "cmbert", "--data-dir", "{tmp}", "--cache-dir", "{tmp}/c"], "train.tsv not found"),
    ],
)
def test_errors_are_messages_and_a_non_zero_exit(tiny_folder, tmp_path, capsys, argv, message):
    (tmp_path / "in.tsv").write_text("text\ngood\n")
    (tmp_path / "no_text.tsv").write_text("sentence\ngood\n")
    (tmp_path / "blank.tsv").write_text("text\tfeatures\ngood\t\n\t\n")
    np.save(tmp_path / "wide.npy", np.ones((1, 4)))
    (tmp_path / "wide.tsv").write_text("text\tfeatures\ngood\t\nfine\twide.npy\n")
    argv = [arg.format(tmp=tmp_path) for arg in argv]
    assert main([argv[0], "--model", str(tiny_folder), *argv[1:]]) == 1
    error = capsys.readouterr().err
    assert f"cmbert {argv[0]}: error: " in error and message.format(tmp=tmp_path) in error
    assert "Traceback" not in error


@pytest.fixture(scope="module")
def tone(tmp_path_factory):
    """Two seconds of a steady tone as a WAV file, and two timings files that split it differently."""
    folder = tmp_path_factory.mktemp("tone")
    sf.write(folder / "tone.wav", np.tile(TONE, 2), 16000)
    for name, middle in (("early", 0.4), ("late", 1.6)):
        (folder / f"{name}.tsv").write_text(f"hello\t0.0\t{middle}\nthere\t{middle}\t2.0\n")
    return folder


def _predict(argv, capsys) -> dict:
    assert main(["predict", *argv]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_timings_change_the_features_of_a_steady_tone(tiny_folder, tone, capsys):
    # Every frame of a tone is alike: only the words' durations tell the two splits apart.
    argv = ["--model", str(tiny_folder), "--text", "hello there", "--audio", str(tone / "tone.wav")]
    early = _predict([*argv, "--timings", str(tone / "early.tsv")], capsys)["score"]
    late = _predict([*argv, "--timings", str(tone / "late.tsv")], capsys)["score"]
    assert abs(early - late) > 1e-4


def test_audio_for_a_model_of_precomputed_features_says_to_pass_features(tiny_folder, tone, tmp_path, capsys):
    folder = variant(tiny_folder, tmp_path / "covarep", config=COVAREP)
    argv = ["--text", "hello there", "--audio", str(tone / "tone.wav"), "--timings", str(tone / "early.tsv")]
    assert main(["predict", "--model", str(folder), *argv]) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("cmbert predict: error: This model was trained on precomputed 'covarep' features (5 per")
    assert error.endswith("(`cmbert predict --features FILE.npy`).")


def test_audio_for_a_text_only_model_is_ignored_with_one_line(tiny_folder, tone, tmp_path, capsys, caplog):
    folder = variant(tiny_folder, tmp_path / "text-only", config=TEXT_ONLY)
    text_only = _predict(["--model", str(folder), "--text", "hello there"], capsys)
    argv = ["--model", str(folder), "--text", "hello there", "--audio", str(tone / "tone.wav")]
    assert _predict([*argv, "--timings", str(tone / "early.tsv")], capsys) == text_only
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        "This model was trained without audio (text only): the audio given is ignored."
    ]


def test_console_script_exits_non_zero_on_a_missing_file(tiny_folder, tmp_path):
    cmbert = Path(sys.executable).with_name("cmbert")
    missing = tmp_path / "clip.wav"
    done = subprocess.run(
        [str(cmbert), "predict", "--model", str(tiny_folder), "--text", "good", "--audio", str(missing)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == f"cmbert predict: error: file not found: {missing}"
    assert "Traceback" not in done.stderr


def _broken_copies(tiny_folder, tmp_path):
    corrupt, plain = tmp_path / "corrupt", tmp_path / "plain"
    shutil.copytree(tiny_folder, corrupt)
    (corrupt / "model.safetensors").write_bytes((corrupt / "model.safetensors").read_bytes()[:1000])
    shutil.copytree(tiny_folder, plain)
    config = json.loads((plain / "config.json").read_text())
    del config["auto_map"], config["custom_pipelines"]
    (plain / "config.json").write_text(json.dumps(config))
    return corrupt, plain


@pytest.mark.parametrize(
    "argv, message",
    [
        (["predict", "--model", "{tmp}/corrupt", "--text", "good"], "{tmp}/corrupt: cannot read model.safetensors"),
        (["predict", "--model", "{tmp}/plain", "--text", "good", "--trust-remote-code"],
         "{tmp}/plain has no model code of its own (no auto_map in its config.json): run it without "
         "--trust-remote-code"),
        (["evaluate", "--model", "{tmp}/plain", "--data", "cmbert", "--cache-dir", "{tmp}/c"],
         "--data cmbert needs --data-dir: Put train.tsv"),
        (["predict", "--model", "{tmp}/nonexistent", "--text", "good"], "model folder not found: {tmp}/nonexistent"),
        (["predict", "--model", "outputs/nonexistent/run", "--text", "good"], "model folder not found: outputs/"),
        (["explain", "--model", "./run", "--text", "good", "--out", "{tmp}/f.png"], "model folder not found: ./run"),
    ],
)
def test_broken_models_and_missing_data_are_one_line(tiny_folder, tmp_path, capsys, argv, message):
    _broken_copies(tiny_folder, tmp_path)
    argv = [arg.format(tmp=tmp_path) for arg in argv]
    assert main(argv) == 1
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1 and "Traceback" not in error, error
    assert error.startswith(f"cmbert {argv[0]}: error: ") and message.format(tmp=tmp_path) in error, error


def test_hub_ids_are_looked_up_in_the_cache_when_offline(tiny_folder, tmp_path, monkeypatch):
    from huggingface_hub import constants

    from cmbert_hf.hub import check_model_location

    monkeypatch.chdir(tmp_path)  # no local folder named like the repo's namespace
    check_model_location(str(tiny_folder))
    check_model_location("user/model")  # online: left to the Hub client
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(FileNotFoundError, match="user/model is neither a local folder nor in the Hub cache"):
        check_model_location("user/model")
    check_model_location(str(tiny_folder))  # local folders need no cache


def test_an_audio_model_given_only_text_refuses_on_the_command_line(tiny_folder, pipe, tmp_path, capsys):  # noqa: F811
    for command in (["predict"], ["explain", "--out", str(tmp_path / "a.png")]):
        assert main([*command, "--model", str(tiny_folder), "--text", "what a great movie"]) == 1
        error = capsys.readouterr().err.strip().splitlines()[-1]  # after the weights' progress bar
        assert error.startswith(f"cmbert {command[0]}: error: 'what a great movie': This model was trained with audio")
        assert "pass --text-only to score the text alone" in error and "Traceback" not in error
    assert not (tmp_path / "a.png").exists()
    scored = _predict(["--model", str(tiny_folder), "--text", "what a great movie", "--text-only"], capsys)
    assert scored == {**pipe("what a great movie"), "score": pytest.approx(pipe("what a great movie")["score"])}


def test_explain_in_a_fresh_process_needs_no_remote_code(tiny_folder, tmp_path):
    # A fresh `cmbert explain` imports this package's modules before transformers (the Auto classes must still
    # know `cmbert`, or the folder is taken for remote code and --trust-remote-code asked for).
    out = tmp_path / "attention.png"
    argv = ["explain", "--model", str(tiny_folder), "--text", TEXTS[1], "--out", str(out), "--text-only"]
    code = "import sys; from cmbert_hf.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == f"wrote {out}" and out.is_file()
