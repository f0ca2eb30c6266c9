"""The `spoken` config: espeak-ng speech whose stressed word, heard only in the audio, sets the label."""

import datasets
import numpy as np
import pytest

from dataset_script import load_mosi
from dataset_script.recordings import decode_audio
from dataset_script.spoken import VOICES, plan_split
from dataset_script.synthetic import FILLERS, POLARITY, text_polarity


SIZES = dict(train_size=8, validation_size=2, test_size=2, cross_modal_fraction=0.5)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    cache = tmp_path_factory.mktemp("spoken-cache")
    try:
        return cache, load_mosi("spoken", cache_dir=cache, **SIZES)
    except ImportError as error:
        pytest.fail(f"espeak-ng synthesis is required ({error}): pip install -e '.[test]'")


def test_plan_is_deterministic_and_varied():
    plan = plan_split("train", 60, 0, 0.3)
    assert plan == plan_split("train", 60, 0, 0.3)
    assert [u["words"] for u in plan] != [u["words"] for u in plan_split("train", 60, 1, 0.3)]
    assert sum(u["stressed"] is not None for u in plan) == 18
    assert {u["voice"] for u in plan} == set(VOICES)
    for u in plan:
        if u["stressed"] is None:
            assert np.sign(u["label"]) == np.sign(text_polarity(" ".join(u["words"])))
        else:
            assert abs(u["label"] - POLARITY[u["words"][u["stressed"]]]) < 0.5
            assert sorted(np.sign(POLARITY[w]) for w in u["words"] if w in POLARITY) == [-1, 1]


def test_vocabulary_is_in_the_aligners_dictionary():
    from cmbert_hf.alignment_cmbert import _get_decoder, normalize_word

    decoder = _get_decoder()
    assert all(decoder.lookup_word(normalize_word(w)) for w in [*POLARITY, *FILLERS])


def test_corpus_rows_follow_the_plan(corpus):
    _, dataset = corpus
    assert [dataset[s].num_rows for s in dataset] == [8, 2, 2]
    raw = dataset.cast_column("audio", datasets.Audio(decode=False))
    for split in dataset:
        for row, planned in zip(raw[split], plan_split(split, dataset[split].num_rows, 0, 0.5)):
            assert row["text"] == " ".join(planned["words"])
            assert row["label"] == pytest.approx(planned["label"])
            assert [t["word"] for t in row["true_timings"]] == planned["words"] and row["word_timings"] is None
            duration = len(decode_audio(row["audio"])) / 16000
            assert 0 <= row["true_timings"][0]["start"] and row["true_timings"][-1]["end"] <= duration + 0.01


def test_stressed_word_is_longer_and_louder(corpus):
    _, dataset = corpus
    raw = dataset["train"].cast_column("audio", datasets.Audio(decode=False))
    checked = 0
    for row, planned in zip(raw, plan_split("train", 8, 0, 0.5)):
        if planned["stressed"] is None:
            continue
        waveform = decode_audio(row["audio"])
        other = next(i for i, w in enumerate(planned["words"]) if w in POLARITY and i != planned["stressed"])
        spans = {i: row["true_timings"][i] for i in (planned["stressed"], other)}
        per_char = {i: (s["end"] - s["start"]) / len(s["word"]) for i, s in spans.items()}
        rms = {i: np.sqrt(np.mean(waveform[int(s["start"] * 16000) : int(s["end"] * 16000)] ** 2)) for i, s in spans.items()}
        assert per_char[planned["stressed"]] > 1.4 * per_char[other]
        assert rms[planned["stressed"]] > 1.4 * rms[other]
        checked += 1
    assert checked == 4


def test_audio_is_written_once_and_reused(corpus, tmp_path):
    cache, dataset = corpus
    folders = list((cache / "mosi_spoken_audio").iterdir())
    assert len(folders) == 1 and (folders[0] / "metadata.jsonl").is_file()
    before = {p: p.stat().st_mtime_ns for p in folders[0].rglob("*")}
    # A new Arrow cache built from the same audio folder: nothing is synthesised again, the rows are identical.
    again = load_mosi("spoken", data_dir=folders[0], cache_dir=tmp_path, **SIZES)
    assert {p: p.stat().st_mtime_ns for p in folders[0].rglob("*")} == before
    for split in dataset:
        assert again[split].data.table.equals(dataset[split].data.table)


def test_aligner_finds_the_true_boundaries(corpus):
    from cmbert_hf.alignment_cmbert import align_words

    _, dataset = corpus
    raw = dataset["train"].cast_column("audio", datasets.Audio(decode=False))
    errors = []
    for row in raw:
        aligned = align_words(decode_audio(row["audio"]), row["text"].split())
        errors += [abs(a[1] - t["start"]) for a, t in zip(aligned, row["true_timings"])]
    assert np.median(errors) < 0.03


def test_espeak_word_events_skip_markup_and_follow_the_audio():
    import librosa

    from dataset_script.espeak import EspeakError, synthesize
    from dataset_script.spoken import STRESS

    plain = synthesize("the movie was great", voice="en-us")
    stressed = synthesize("the movie was " + STRESS.format("great"), voice="en-us", ssml=True)
    female = synthesize("the movie was great", voice="en-us+f3")
    for speech in (plain, stressed, female):
        assert speech.sampling_rate == 22050 and speech.waveform.dtype == np.float32
        assert [w for w, _, _ in speech.word_timings] == ["the", "movie", "was", "great"]
        starts = [a for _, a, _ in speech.word_timings]
        assert starts == sorted(starts) and all(a < b for _, a, b in speech.word_timings)
        assert speech.word_timings[-1][2] <= len(speech.waveform) / speech.sampling_rate

    def word(speech, i):
        _, a, b = speech.word_timings[i]
        return speech.waveform[int(a * speech.sampling_rate) : int(b * speech.sampling_rate)]

    def f0(x):
        return np.median(librosa.yin(x, fmin=60, fmax=400, sr=22050, frame_length=1024))

    # Stress: longer, louder, higher; the unstressed words are spoken alike.
    assert len(word(stressed, 3)) > 1.6 * len(word(plain, 3))
    assert np.sqrt(np.mean(word(stressed, 3) ** 2)) > 1.6 * np.sqrt(np.mean(word(plain, 3) ** 2))
    assert f0(word(stressed, 3)) > 1.15 * f0(word(plain, 3))
    assert f0(female.waveform) > 1.5 * f0(plain.waveform)
    with pytest.raises(EspeakError, match="no voice 'xx-nope'"):
        synthesize("hello", voice="xx-nope")


def test_interrupted_synthesis_leaves_nothing(tmp_path, monkeypatch):
    from dataset_script import spoken

    real, calls = spoken.speak, []

    def failing(utterance):
        calls.append(utterance)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(utterance)

    monkeypatch.setattr(spoken, "speak", failing)
    with pytest.raises(KeyboardInterrupt):
        load_mosi("spoken", cache_dir=tmp_path, train_size=4, validation_size=1, test_size=1)
    assert list((tmp_path / "mosi_spoken_audio").iterdir()) == []  # neither the corpus nor its staging folder
    monkeypatch.setattr(spoken, "speak", real)
    assert load_mosi("spoken", cache_dir=tmp_path, train_size=4, validation_size=1, test_size=1)["train"].num_rows == 4
