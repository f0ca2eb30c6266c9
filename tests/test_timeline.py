"""`cmbert predict --audio FILE` without `--text` and `pipe({"audio": FILE})`: a recording or a video of several
utterances in, one scored row per utterance out (Whisper base from the packaged wheels, offline)."""

import json

import numpy as np
import pandas as pd
import pytest
from recording import join_utterances, word_errors, write_mp4, write_wav
from speech import speak
from transformers import pipeline

from cmbert_hf import CMBertSentimentPipeline, cli
from cmbert_hf.pipeline_cmbert import TASK, score_to_label
from cmbert_hf.transcription_cmbert import transcribe_file

TEXTS = ("what a great movie", "the acting was terrible", "i loved the ending")
VOICES = ("en-us", "en-us+f3", "en-us+m3")


@pytest.fixture(scope="module")
def interview(tmp_path_factory):
    """Three espeak-ng utterances, each after one second of silence (and one after the last), as WAV and MP4."""
    folder = tmp_path_factory.mktemp("interview")
    waveform, truth = join_utterances([speak(t, voice=v) for t, v in zip(TEXTS, VOICES)], [1.0] * 4)
    rate = 22050
    return write_wav(folder / "interview.wav", waveform, rate), write_mp4(folder / "interview.mp4", waveform, rate), truth


def check_rows(rows, truth):
    """The done-when: one row per utterance, boundaries within 0.5 s of the truth, word error rate <= 25%."""
    assert len(rows) == len(truth)
    for row, (_, start, end) in zip(rows, truth):
        assert abs(row["start"] - start) <= 0.5 and abs(row["end"] - end) <= 0.5, (row, start, end)
        assert (row["label"], row["polarity"]) == score_to_label(row["score"]) and -3 <= row["score"] <= 3
    errors, total = np.sum([word_errors(text, row["text"]) for row, (text, _, _) in zip(rows, truth)], axis=0)
    assert errors / total <= 0.25, [row["text"] for row in rows]


def test_a_wav_and_an_mp4_give_one_row_per_utterance(interview, tiny_folder, tmp_path, capsys):
    wav, mp4, truth = interview
    out = tmp_path / "timeline.jsonl"
    command = ["predict", "--model", str(tiny_folder), "--audio", str(wav), "--output", str(out)]
    assert cli.main([*command, "--plot", str(tmp_path / "timeline.png")]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert list(rows[0]) == ["start", "end", "text", "score", "label", "polarity"]
    check_rows(rows, truth)
    assert (tmp_path / "timeline.png").read_bytes()[:4] == b"\x89PNG"
    # The video, through the folder's own code (remote code: the pipeline ships its transcription module).
    remote = pipeline(model=str(tiny_folder), trust_remote_code=True, device="cpu")
    assert type(remote).__module__.startswith("transformers_modules.")
    utterances = remote({"audio": str(mp4)})
    check_rows(utterances, truth)  # AAC coding changes the audio: Whisper may hear a word differently than in the WAV
    # Each score is the model's score of the utterance's text on its own audio with its word timings.
    local = pipeline(TASK, model=str(tiny_folder), pipeline_class=CMBertSentimentPipeline, device="cpu")
    utterance, audio = next(transcribe_file(wav))
    timings = [(word, a - utterance.start, b - utterance.start) for word, a, b in utterance.words]
    alone = local({"text": utterance.text, "audio": audio, "sampling_rate": 16000, "word_timings": timings})
    assert rows[0]["score"] == pytest.approx(alone["score"], abs=1e-5)
    assert capsys.readouterr().err.count("\n") >= 3  # one progress line per utterance, then what was written


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_csv_and_parquet_hold_the_same_rows(tmp_path, suffix):
    from cmbert_hf.timeline import write_timeline

    rows = [{"start": 0.5, "end": 1.5, "text": "so good", "score": 1.25, "label": "positive", "polarity": "positive"}]
    write_timeline(rows, tmp_path / f"t{suffix}")
    table = pd.read_csv(tmp_path / "t.csv") if suffix == ".csv" else pd.read_parquet(tmp_path / "t.parquet")
    assert table.to_dict("records") == rows
    assert [p.name for p in tmp_path.iterdir()] == [f"t{suffix}"]  # no staging file left


def run(argv, capsys):
    status = cli.main(argv)
    lines = capsys.readouterr().err.strip().splitlines()
    return status, [line for line in lines if not line.startswith("Loading weights")]  # transformers' progress bar


def test_bad_files_are_one_line_naming_the_file_and_write_nothing(tiny_folder, tmp_path, capsys):
    write_mp4(tmp_path / "no_audio.mp4", None, seconds=2)
    speech, _ = join_utterances([speak("what a great movie")], [0.5, 0.5])
    whole = write_mp4(tmp_path / "whole.mp4", speech, 22050).read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "notes.wav").write_text("not audio")
    out = tmp_path / "timeline.jsonl"
    cases = {
        "missing.wav": "file not found",
        "no_audio.mp4": "has no audio track",
        "truncated.mp4": "not a readable audio or video file",
        "notes.wav": "not a readable audio or video file",
    }
    for name, message in cases.items():
        path = tmp_path / name
        status, lines = run(["predict", "--model", str(tiny_folder), "--audio", str(path), "--output", str(out)], capsys)
        assert status == 1 and len(lines) == 1 and str(path) in lines[0] and message in lines[0], lines
    assert not out.exists()
    status, lines = run(["predict", "--model", str(tiny_folder), "--audio", str(path), "--output", "t.tsv"], capsys)
    assert status == 1 and lines == ["cmbert predict: error: t.tsv: expected a file ending in .jsonl or .csv or .parquet"]


def test_silence_and_noise_give_an_empty_timeline_and_say_so(tiny_folder, tmp_path, capsys):
    rng = np.random.default_rng(0)
    quiet = np.concatenate([np.zeros(16000 * 2), 0.01 * rng.normal(size=16000 * 3)]).astype(np.float32)
    path = write_wav(tmp_path / "quiet.wav", quiet, 16000)
    out = tmp_path / "timeline.csv"
    status, lines = run(["predict", "--model", str(tiny_folder), "--audio", str(path), "--output", str(out)], capsys)
    assert status == 0 and f"{path}: no speech found; the timeline is empty" in lines
    assert pd.read_csv(out).empty and list(pd.read_csv(out).columns) == ["start", "end", "text", "score", "label", "polarity"]


@pytest.mark.slow
def test_speech_in_another_language_is_refused_not_scored(tiny_folder, tmp_path, capsys):
    german = speak("Das Wetter ist heute wirklich schön und ich freue mich sehr darüber", voice="de")
    waveform, _ = join_utterances([german], [0.5, 0.5])
    path = write_wav(tmp_path / "german.wav", waveform, german.sampling_rate)
    out = tmp_path / "timeline.jsonl"
    status, lines = run(["predict", "--model", str(tiny_folder), "--audio", str(path), "--output", str(out)], capsys)
    assert status == 1 and len(lines) == 1 and "'de'" in lines[0] and "English only" in lines[0], lines
    assert not out.exists()
