"""The `recordings` config: a folder of audio files with metadata, validated, decoded to 16 kHz mono, exported."""

import json
import re
from pathlib import Path

import datasets
import librosa
import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from cmbert_hf import CMBertFeatureExtractor
from dataset_script import MosiDataError, audio_facts, load_mosi
from dataset_script.export import export_to_folder
from dataset_script.recordings import decode_audio
from speech import speak, write_folder


@pytest.fixture(scope="module")
def speeches():
    return {
        "great": speak("the movie was great"),
        "boring": speak("so boring", voice="en-us+f3"),
        "fun": speak("really fun film", rate=200),
    }


def rows(speeches):
    great, boring, fun = speeches["great"], speeches["boring"], speeches["fun"]
    return [
        {"file_name": "a/great.wav", "text": "the movie was great", "label": 2.2, "split": "train", "speech": great,
         "word_timings": [list(t) for t in great.word_timings]},
        {"file_name": "boring.wav", "text": "so boring", "label": -1.0, "split": "validation", "speech": boring},
        {"file_name": "fun.wav", "text": "really fun film", "label": 1.4, "split": "test", "speech": fun, "video_id": "v1"},
    ]  # fmt: skip


def test_reads_folder_decodes_any_format_to_16k_mono(tmp_path, speeches):
    folder = tmp_path / "rec"
    write_folder(folder, rows(speeches), metadata="metadata.csv")
    # Replace one clip by a 44.1 kHz stereo FLAC and another by an 8 kHz OGG: both are read and converted.
    fun = speeches["fun"]
    stereo = librosa.resample(fun.waveform, orig_sr=fun.sampling_rate, target_sr=44100)
    sf.write(folder / "fun.wav", np.stack([stereo, 0.5 * stereo], axis=1), 44100, format="FLAC")
    dataset = load_mosi("recordings", data_dir=folder, cache_dir=tmp_path / "cache")
    assert list(dataset) == ["train", "validation", "test"]
    train = dataset["train"]
    assert train.features["audio"] == datasets.Audio(sampling_rate=16000, num_channels=1)
    raw = dataset.cast_column("audio", datasets.Audio(decode=False))
    row = raw["train"][0]
    assert (row["id"], row["text"], row["label7"]) == ("a/great.wav", "the movie was great", 5)
    assert audio_facts(dataset)["level"] == "waveform" and audio_facts(dataset)["sampling_rate"] == 16000
    assert row["audio"]["bytes"] == (folder / "a/great.wav").read_bytes()  # the file as it was
    great = speeches["great"]
    assert [(t["word"], t["start"], t["end"]) for t in row["word_timings"]] == great.word_timings
    assert row["true_timings"] is None and raw["validation"][0]["word_timings"] is None
    # 16 kHz mono: the samples the feature extractor reads from the same bytes, and close to what an independent
    # resampler (librosa's soxr) makes of the 16-bit samples the WAV holds (the two filters differ near 8 kHz).
    decoded = decode_audio(row["audio"])
    np.testing.assert_array_equal(decoded, CMBertFeatureExtractor()._load(row["audio"], None, None)[0])
    expected = librosa.resample(np.round(great.waveform * 32768) / 32768, orig_sr=great.sampling_rate, target_sr=16000)
    np.testing.assert_allclose(decoded, expected, atol=1e-2)
    test_row = raw["test"][0]
    assert test_row["video_id"] == "v1"
    mono = decode_audio(test_row["audio"])
    reference = librosa.resample(0.75 * stereo, orig_sr=44100, target_sr=16000)
    assert len(mono) == len(reference) and np.abs(mono - reference).max() < 1e-2


def test_without_split_column_a_seeded_holdout_makes_every_split(tmp_path, speeches):
    folder = tmp_path / "rec"
    plain = [{k: v for k, v in r.items() if k != "split"} for r in rows(speeches)]
    copies = [{**r, "file_name": f"{i}-{r['file_name'].replace('/', '-')}"} for i in range(8) for r in plain]  # 24 rows
    write_folder(folder, plain + copies)
    dataset = load_mosi("recordings", data_dir=folder, cache_dir=tmp_path / "cache")
    # 27 rows: round(10%) = 3 in validation, 3 in test, drawn by a permutation with the config's seed (0).
    order = np.random.default_rng(0).permutation(27)
    names = [r["file_name"] for r in plain + copies]
    expected = {"validation": sorted(order[:3]), "test": sorted(order[3:6])}
    expected["train"] = sorted(set(range(27)) - set(order[:6]))
    assert {split: dataset[split]["id"] for split in dataset} == {s: [names[i] for i in expected[s]] for s in expected}
    other = load_mosi("recordings", data_dir=folder, cache_dir=tmp_path / "cache", seed=1)
    assert other["test"]["id"] != dataset["test"]["id"] and other["train"].num_rows == 21
    write_folder(folder, plain[:2])
    with pytest.raises(MosiDataError, match="no split column, 2 rows.*expected a split column, or at least 3 rows"):
        load_mosi("recordings", data_dir=folder, cache_dir=tmp_path / "cache")


def _break(folder, how):
    path = folder / "boring.wav"
    if how == "missing":
        path.unlink()
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    elif how == "not audio":
        path.write_text("hello")
    elif how == "silent":
        sf.write(path, np.zeros(16000, np.float32), 16000)


@pytest.mark.parametrize(
    "how, message",
    [
        ("missing", r"boring.wav not found"),
        ("empty", r"boring.wav is empty"),
        ("truncated", r"boring.wav is truncated"),
        ("not audio", r"boring.wav is not readable audio"),
        ("silent", r"boring.wav is silent"),
    ],
)
def test_bad_audio_files_are_named(tmp_path, speeches, how, message):
    folder = tmp_path / "rec"
    write_folder(folder, rows(speeches))
    _break(folder, how)
    with pytest.raises(MosiDataError, match=message):
        load_mosi("recordings", data_dir=folder, cache_dir=tmp_path / "cache")
    # Nothing was cached as complete: after the fix the same cache builds and holds every row.
    write_folder(folder, rows(speeches))
    assert load_mosi("recordings", data_dir=folder, cache_dir=tmp_path / "cache")["validation"].num_rows == 1


def _timings(speeches, change):
    timings = [list(t) for t in speeches["boring"].word_timings]
    change(timings)
    return timings


@pytest.mark.parametrize(
    "update, message",
    [
        ({"label": 3.5}, r"boring.wav: label 3.5.*expected a number in \[-3, 3\]"),
        ({"label": "bad"}, r"boring.wav: label 'bad' is not a number"),
        ({"split": "dev"}, r"boring.wav: split 'dev'"),
        ({"word_timings": [["so", 0.0, 0.2]]}, r"word_timings has 1 entries.*expected 2"),
        ({"word_timings": "late"}, r"word_timings is not JSON"),
        ("outside", r"word_timings word 1 'boring' spans .*the clip's"),
        ("order", r"word 1 'boring' starts at 0.0 s, before the previous word"),
        ("other word", r"word_timings entry 1 names 'exciting' but word 1 of the text is 'boring'"),
    ],
)
def test_bad_metadata_is_named(tmp_path, speeches, update, message):
    rewrite = {
        "outside": lambda t: t[1].__setitem__(2, t[1][2] + 1.0),
        "order": lambda t: (t[0].__setitem__(1, 0.1), t[1].__setitem__(1, 0.0)),
        "other word": lambda t: t[1].__setitem__(0, "exciting"),
    }
    if isinstance(update, str):
        update = {"word_timings": _timings(speeches, rewrite[update])}
    bad = [{**r, **update} if r["file_name"] == "boring.wav" else r for r in rows(speeches)]
    folder = tmp_path / "rec"
    write_folder(folder, bad)
    with pytest.raises(MosiDataError, match=message) as error:
        load_mosi("recordings", data_dir=folder, cache_dir=tmp_path / "cache")
    assert "metadata.jsonl" in str(error.value)


def test_metadata_columns_and_files(tmp_path, speeches):
    folder = tmp_path / "rec"
    write_folder(folder, [{**r, "lable": 1} for r in rows(speeches)])
    with pytest.raises(MosiDataError, match=r"unknown columns \['lable'\]"):
        load_mosi("recordings", data_dir=folder, cache_dir=tmp_path / "cache")
    (folder / "metadata.csv").write_text("file_name,text,label\n")
    with pytest.raises(FileNotFoundError, match="found both of metadata.csv / metadata.jsonl"):
        load_mosi("recordings", data_dir=folder, cache_dir=tmp_path / "cache")
    with pytest.raises(datasets.exceptions.ManualDownloadError, match="data_dir"):
        load_mosi("recordings", cache_dir=tmp_path / "cache")


def test_export_keeps_the_audio_and_loads_back(tmp_path, speeches):
    folder = tmp_path / "rec"
    write_folder(folder, rows(speeches))
    out = export_to_folder(tmp_path / "hub", configs=["recordings"], data_dir=str(folder), cache_dir=tmp_path / "c")
    built = datasets.load_dataset(str(out), "recordings", cache_dir=str(tmp_path / "reload"))
    source = load_mosi("recordings", data_dir=folder, cache_dir=tmp_path / "c")
    for split in source:
        assert built[split].features == source[split].features
        assert built[split].data.table.equals(source[split].data.table), split
    row = built["train"].cast_column("audio", datasets.Audio(decode=False))[0]
    assert row["audio"]["bytes"] == (folder / "a/great.wav").read_bytes()
    json.dumps(row["word_timings"])  # plain values


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_a_file_outside_the_folder_is_refused(tmp_path, speeches, how):
    folder, outside = tmp_path / "rec", tmp_path / "elsewhere" / "secret.wav"
    write_folder(folder, rows(speeches))
    outside.parent.mkdir()
    (folder / "boring.wav").rename(outside)
    name = {"dotdot": "../elsewhere/secret.wav", "absolute": str(outside), "symlink": "boring.wav"}[how]
    if how == "symlink":
        (folder / "boring.wav").symlink_to(outside)
    write_folder(folder, [{**r, "file_name": name} if r["file_name"] == "boring.wav" else r for r in rows(speeches)])
    with pytest.raises(MosiDataError, match=rf"file_name '{re.escape(name)}' resolves to {outside}, outside the folder"):
        load_mosi("recordings", data_dir=folder, cache_dir=tmp_path / "cache")


def test_export_holds_relative_paths_and_only_the_folders_bytes(tmp_path, speeches):
    folder = tmp_path / "rec"
    write_folder(folder, rows(speeches))
    out = export_to_folder(tmp_path / "hub", configs=["recordings"], data_dir=str(folder), cache_dir=tmp_path / "c")
    for shard in sorted(out.rglob("*.parquet")):
        for audio in pq.read_table(shard).column("audio").to_pylist():
            assert not Path(audio["path"]).is_absolute() and ".." not in Path(audio["path"]).parts
            assert audio["bytes"] == (folder / audio["path"]).read_bytes()
    exported = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
    assert str(tmp_path).encode() not in exported  # no local path anywhere in the export


def _clip(seconds, dbfs, rate=16000):
    """A 200 Hz tone of `seconds` whose RMS is `dbfs` (a sine's peak is sqrt(2) times its RMS)."""
    t = np.arange(int(seconds * rate)) / rate
    return (np.sqrt(2) * 10 ** (dbfs / 20) * np.sin(2 * np.pi * 200 * t)).astype(np.float32)


@pytest.mark.parametrize(
    "waveform, text, message",
    [
        (_clip(1.0, -70), "so boring", r"boring.wav is silent \(loudest frame -70\.\d dBFS\).*louder than -60.0 dBFS"),
        (_clip(1.0, -20), " ".join(["word"] * 500), r"boring.wav lasts 1.000 s for 500 words.*at least 0.05 s per word"),
        (_clip(10 / 16000, -20), "so boring", r"boring.wav lasts 0.001 s for 2 words"),
    ],
    ids=["-70 dBFS", "500 words a second", "10 samples"],
)
def test_clips_the_extractor_refuses_are_refused_when_built(tmp_path, speeches, waveform, text, message):
    from cmbert_hf.feature_extraction_cmbert import CMBertFeatureExtractor

    folder = tmp_path / "rec"
    write_folder(folder, [{**r, "text": text} if r["file_name"] == "boring.wav" else r for r in rows(speeches)])
    sf.write(folder / "boring.wav", waveform, 16000, subtype="FLOAT")
    with pytest.raises(MosiDataError, match=message):
        load_mosi("recordings", data_dir=folder, cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="silent|too short"):  # the same clip, refused by the extraction too
        CMBertFeatureExtractor(aligner="proportional", do_normalize=False).word_features(str(folder / "boring.wav"), text.split())
    sf.write(folder / "boring.wav", _clip(1.0, -55), 16000, subtype="FLOAT")  # just above the threshold: both take it
    write_folder(folder, [{**r, "speech": None} if r["file_name"] == "boring.wav" else r for r in rows(speeches)])
    assert load_mosi("recordings", data_dir=folder, cache_dir=tmp_path / "cache")["validation"].num_rows == 1
    CMBertFeatureExtractor(aligner="proportional", do_normalize=False).word_features(str(folder / "boring.wav"), ["so", "boring"])


def test_builder_thresholds_are_the_extractors():
    from cmbert_hf import feature_extraction_cmbert as extraction
    from dataset_script import RecordingsConfig

    config = RecordingsConfig()
    assert (config.silence_dbfs, config.min_seconds_per_word) == (extraction.SILENCE_DBFS, extraction.MIN_SECONDS_PER_WORD)


@pytest.mark.parametrize(
    "update, message",
    [
        ({"label": True}, r"boring.wav: label true \(expected a number in \[-3, 3\]\)"),
        ({"text": ["so", "boring"]}, r"boring.wav: text is a list \(expected a string of words\)"),
        ({"file_name": "a/great.wav"}, r"a/great.wav: the same file as row 0 \(expected each audio file once"),
        ({"file_name": "./a/../a/great.wav"}, r"a/great.wav: the same file as row 0"),
    ],
)
def test_bad_rows_are_refused(tmp_path, speeches, update, message):
    folder = tmp_path / "rec"
    write_folder(folder, rows(speeches))
    write_folder(folder, [{**r, **update, "speech": None} if r["file_name"] == "boring.wav" else r for r in rows(speeches)])
    with pytest.raises(MosiDataError, match=message):
        load_mosi("recordings", data_dir=folder, cache_dir=tmp_path / "cache")


def test_metadata_that_is_not_utf8_names_the_file_and_line(tmp_path, speeches):
    folder = tmp_path / "rec"
    path = write_folder(folder, rows(speeches), metadata="metadata.csv")
    lines = path.read_bytes().splitlines()
    lines[2] = lines[2].replace(b"so boring", b"so bor\xefng")
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(MosiDataError, match=rf"{path}, row 1: line 3 is not UTF-8"):
        load_mosi("recordings", data_dir=folder, cache_dir=tmp_path / "cache")


def test_an_edit_in_place_builds_and_validates_again(tmp_path, speeches):
    folder, cache = tmp_path / "rec", tmp_path / "cache"
    path = write_folder(folder, rows(speeches), metadata="metadata.csv")
    assert load_mosi("recordings", data_dir=folder, cache_dir=cache)["test"]["label"] == [pytest.approx(1.4)]
    path.write_text(path.read_text().replace(",1.4,", ",5,"))  # what `sed -i` does: same folder, same cache
    with pytest.raises(MosiDataError, match=r"fun.wav: label 5.0 \(expected a number in \[-3, 3\]\)"):
        load_mosi("recordings", data_dir=folder, cache_dir=cache)
    path.write_text(path.read_text().replace(",5,", ",-1.5,"))
    assert load_mosi("recordings", data_dir=folder, cache_dir=cache)["test"]["label"] == [-1.5]
    (folder / "fun.wav").rename(folder / "gone.wav")
    with pytest.raises(MosiDataError, match="fun.wav not found"):
        load_mosi("recordings", data_dir=folder, cache_dir=cache)


def test_a_folder_without_metadata_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    for folder, message in ((tmp_path / "empty", "found neither of metadata.csv / metadata.jsonl"), (tmp_path / "nope", "no such folder")):
        with pytest.raises(FileNotFoundError, match=message) as error:
            load_mosi("recordings", data_dir=folder, cache_dir=tmp_path / "cache")
        assert "\n" not in str(error.value) and str(folder) in str(error.value)
