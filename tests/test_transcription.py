"""transcription_cmbert: the packaged Whisper weights, block-wise decoding, utterances across blocks, and recordings
folders whose rows have no transcript."""

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from recording import join_utterances, word_errors, write_wav
from speech import speak, write_folder

from cmbert_hf import transcription_cmbert as transcription
from dataset_script import load_mosi
from dataset_script.sources import MosiDataError


def digest(paths):
    sha = hashlib.sha256()
    for path in paths:
        sha.update(Path(path).read_bytes())
    return sha.hexdigest()


def test_the_packaged_weights_are_assembled_once_into_the_cache(tmp_path):
    folder = transcription.packaged_whisper(tmp_path)
    assert folder == tmp_path / "faster-whisper-base"
    data = [Path(importlib.util.find_spec(name).origin).parent / "data" for name in transcription.PACKAGED_PARTS]
    assert digest([folder / "model.bin"]) == digest([data[0] / "model.bin.part1", data[1] / "model.bin.part2"])
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        assert (folder / name).read_bytes() == (data[0] / name).read_bytes()
    written = (folder / "model.bin").stat().st_mtime_ns
    assert transcription.packaged_whisper(tmp_path) == folder
    assert (folder / "model.bin").stat().st_mtime_ns == written  # reused, not copied again
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faster-whisper-base"]  # no staging folder left


def test_blocks_are_the_whole_file_resampled_piece_by_piece(tmp_path):
    rng = np.random.default_rng(0)
    waveform = (0.3 * np.sin(2 * np.pi * 220 * np.arange(5 * 22050) / 22050) + 0.01 * rng.normal(size=5 * 22050))
    path = write_wav(tmp_path / "tone.wav", waveform.astype(np.float32), 22050)
    blocks = list(transcription.audio_blocks(path, block_s=1.0))
    assert [len(b) for b in blocks[:-1]] == [16000] * (len(blocks) - 1) and 0 < len(blocks[-1]) <= 16000
    whole = soxr.resample(sf.read(path, dtype="float32")[0], 22050, 16000)
    joined = np.concatenate(blocks)
    assert abs(len(joined) - len(whole)) <= 2
    n = min(len(joined), len(whole))
    np.testing.assert_allclose(joined[:n], whole[:n], atol=2e-3)


@pytest.mark.slow
def test_an_utterance_cut_by_a_block_boundary_is_carried_over(tmp_path):
    speeches = [speak(text) for text in ("what a great movie", "i loved the ending", "the music was wonderful")]
    waveform, _ = join_utterances(speeches, [0.7] * 4)
    path = write_wav(tmp_path / "three.wav", waveform, 22050)
    whole = [(u.text, u.start, u.end) for u, _ in transcription.transcribe_file(path)]
    # 1.5 s blocks cut every utterance; each still comes back once, whole, at its place. (Whisper hears each block's
    # utterances together, so a word may come out otherwise: "loved" / "love".)
    pieces = [(u.text, u.start, u.end) for u, _ in transcription.transcribe_file(path, block_s=1.5)]
    assert len(pieces) == len(whole) == 3
    for (text, a, b), (whole_text, c, d) in zip(pieces, whole):
        assert abs(a - c) <= 0.1 and abs(b - d) <= 0.1 and word_errors(whole_text, text)[0] <= 1


def test_recordings_without_a_transcript_are_transcribed_and_given_ones_kept(tmp_path):
    folder = tmp_path / "recordings"
    rows = [
        {"file_name": "a.wav", "text": "", "label": 2.0, "split": "train", "speech": speak("what a great movie")},
        # A given transcript stays, even where Whisper would hear other words.
        {"file_name": "b.wav", "text": "typed by hand", "label": -1.0, "split": "train",
         "speech": speak("the acting was terrible")},
    ]
    write_folder(folder, rows)
    with pytest.raises(MosiDataError, match="a.wav: empty text.*transcriber"):
        load_mosi("recordings", data_dir=folder, cache_dir=tmp_path / "cache")
    split = load_mosi("recordings", data_dir=folder, cache_dir=tmp_path / "cache", transcribe=transcription.transcript)
    built = {row["id"]: row for row in split["train"].remove_columns("audio")}
    assert built["a.wav"]["transcript"] == "asr:base" and word_errors("what a great movie", built["a.wav"]["text"])[0] <= 1
    assert built["b.wav"]["transcript"] == "given" and built["b.wav"]["text"] == "typed by hand"
    metadata = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    assert metadata[0]["text"] == ""  # the folder itself is left as it was
