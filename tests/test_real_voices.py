"""The aligner, the f0 feature and the transcript check on real human speech: recordings with reference word timings
and an independent tracker's (Praat's) f0 per word, in tests/fixtures/real_voices (see its README)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from cmbert_hf.alignment_cmbert import align_words
from cmbert_hf.feature_extraction_cmbert import CMBertFeatureExtractor


FOLDER = Path(__file__).parent / "fixtures" / "real_voices"
ROWS = [json.loads(line) for line in (FOLDER / "metadata.jsonl").read_text().splitlines()]
READ = ROWS[:4]  # the four read sentences (ARCTIC, praatio); the rest is spontaneous speech cut from MFA's test data
RAW = {"do_normalize": False}


def load(row, rate=16000):
    waveform, sr = sf.read(FOLDER / row["file_name"], dtype="float32")
    return resample_poly(waveform, rate, sr).astype(np.float32) if sr != rate else waveform


def boundary_errors(rows_timings):
    return np.array([
        abs(aligned - true)
        for aligned_timings, true_timings in rows_timings
        for (_, *aligned_span), (_, *true_span) in zip(aligned_timings, true_timings, strict=True)
        for aligned, true in zip(aligned_span, true_span)
    ])  # fmt: skip


@pytest.fixture(scope="module")
def aligned():
    # Without the transcript check, which refuses 2 of the spontaneous clips' true transcripts (see the fixture's README).
    return [align_words(load(row), row["text"].split(), check_transcript=False) for row in ROWS]


def test_aligner_boundaries_on_real_speech(aligned):
    errors = boundary_errors([(timings, row["true_timings"]) for timings, row in zip(aligned, ROWS)])
    assert len(errors) == 2 * sum(len(row["true_timings"]) for row in ROWS)
    # Measured on all 20 clips (388 boundaries): median 14.5 ms, 80.9% within 50 ms; on the four read sentences alone
    # median 18.8 ms, 88.1% (bench/results/real_voices.json). These bounds catch a regression.
    assert np.median(errors) <= 0.020
    assert np.mean(errors <= 0.05) >= 0.80
    read = boundary_errors([(timings, row["true_timings"]) for timings, row in zip(aligned, ROWS) if row in READ])
    assert np.median(read) <= 0.020 and np.mean(read <= 0.05) >= 0.88


def test_word_f0_agrees_with_two_independent_trackers():
    # The reference: the words both Praat and pYIN call voiced. On the creaky cold-corpus voice Praat alone calls
    # many more words voiced, 13 of them at 418-492 Hz for a speaker at 65-130 Hz; see the fixture's README.
    extractor = CMBertFeatureExtractor(features=["f0"], **RAW)
    ours, praat_f0, trackers_agree = [], [], []
    for row in ROWS:
        waveform, sr = sf.read(FOLDER / row["file_name"], dtype="float32")
        timings = [tuple(span) for span in row["true_timings"]]
        f0 = extractor(waveform, word_timings=timings, sampling_rate=sr)["word_features"][:, 0]
        for value, praat, pyin in zip(f0, row["praat_f0"], row["pyin_f0"], strict=True):
            if praat and pyin:
                ours.append(value)
                praat_f0.append(praat)
                trackers_agree.append(abs(12 * np.log2(praat / pyin)) <= 1)
    ours, praat_f0, trackers_agree = np.array(ours), np.array(praat_f0), np.array(trackers_agree)
    assert len(ours) >= 65 and (ours == 0).sum() <= 1  # measured: 69 words, 1 we call unvoiced
    semitones = np.where(ours > 0, np.abs(12 * np.log2(np.maximum(ours, 1e-9) / praat_f0)), np.inf)
    assert (semitones[ours > 0] < 6).all()  # no octave error
    assert np.mean(semitones <= 1) >= 0.95  # measured: 68 of 69 within a semitone of Praat
    assert trackers_agree.sum() >= 60 and (semitones[trackers_agree] <= 1).all()  # all 63 where the two agree


def test_another_clips_transcript_is_refused_naming_the_file():
    mary, bobby = ROWS[1], ROWS[2]
    extractor = CMBertFeatureExtractor(**RAW)
    path = str(FOLDER / mary["file_name"])
    extractor(path, words=mary["text"].split())  # its own transcript fits
    with pytest.raises(ValueError, match=r"mary\.flac.*transcript") as error:
        extractor(path, words=bobby["text"].split())
    assert "\n" not in str(error.value) and "proportional" not in str(error.value)


def test_cmbert_predict_refuses_a_misfit_transcript_unless_told_it_is_right(aligned, tiny_folder, tmp_path, capsys):
    from cmbert_hf import cli

    # A true transcript that the check refuses (its reduced "pretty").
    index, row = next((i, row) for i, row in enumerate(ROWS) if row["file_name"] == "acoustic_corpus_0081.flac")
    args = ["predict", "--model", str(tiny_folder), "--text", row["text"], "--audio", str(FOLDER / row["file_name"])]
    assert cli.main(args) == 1
    line = capsys.readouterr().err.splitlines()[-1]  # after the weights' loading bar
    assert line.startswith("cmbert predict: error: The audio ") and "acoustic_corpus_0081.flac" in line
    assert "['pretty']" in line and line.endswith("(check_transcript=False; cmbert predict --no-transcript-check)")
    assert cli.main([*args, "--no-transcript-check"]) == 0
    unchecked = json.loads(capsys.readouterr().out)["score"]
    # Scored on the spans the aligner gave (without the check: the `aligned` fixture), as if given as word timings.
    spans = aligned[index]
    (tmp_path / "words.tsv").write_text("".join(f"{word}\t{start}\t{end}\n" for word, start, end in spans))
    assert cli.main([*args, "--timings", str(tmp_path / "words.tsv")]) == 0
    assert json.loads(capsys.readouterr().out)["score"] == pytest.approx(unchecked, abs=1e-6)


@pytest.mark.parametrize("how", ["cut", "other"])
def test_wrong_transcripts_of_real_speech_are_caught(how):
    row, other = ROWS[0], ROWS[3]
    words = row["text"].split()[:2] if how == "cut" else other["text"].split()
    with pytest.raises(ValueError, match="transcript|lost"):
        align_words(load(row), words)


@pytest.mark.parametrize(
    "name, shuffled, squeezed",
    [("acoustic_corpus_1426.flac", "saying just uh words some we're", "saying"),
     ("cold_corpus_0099.flac", "uh uh so this have the corpus is a sick i", "sick")],
)  # fmt: skip
def test_shuffled_words_of_real_speech_are_refused_naming_the_order(aligned, name, shuffled, squeezed):
    index = next(i for i, row in enumerate(ROWS) if row["file_name"] == name)
    # The spoken order passes the check; the shuffled one passes the acoustic-fit and coverage measures, but a word
    # placed where it is not said is squeezed into its fewest frames and fits badly there.
    align_words(load(ROWS[index]), ROWS[index]["text"].split())
    with pytest.raises(ValueError, match=rf"\['{squeezed}'\] are squeezed .* are the words in the spoken order\?") as error:
        CMBertFeatureExtractor(**RAW)(str(FOLDER / name), words=shuffled.split())
    assert name in str(error.value) and "\n" not in str(error.value)


def test_training_counts_a_mismatched_transcript():
    row = ROWS[0]
    extractor = CMBertFeatureExtractor(**RAW)
    features, timing = extractor.word_features(
        str(FOLDER / row["file_name"]), row["text"].split()[:2], spread_unaligned=True, return_timing=True
    )
    assert timing == "mismatched" and features.shape[0] == 2


def test_long_silences_at_both_ends_keep_the_timings_and_the_f0():
    row = ROWS[0]
    waveform = load(row)
    quiet = 3e-4 * np.random.default_rng(0).standard_normal(3 * 16000).astype(np.float32)
    padded = np.concatenate([quiet, waveform, quiet])
    words = row["text"].split()
    timings = align_words(padded, words)
    errors = boundary_errors([([(w, a - 3, b - 3) for w, a, b in timings], row["true_timings"])])
    assert np.median(errors) <= 0.03
    extractor = CMBertFeatureExtractor(features=["f0"], **RAW)
    at_edges = extractor(padded, words=words, sampling_rate=16000)["word_features"][:, 0]
    plain = extractor(waveform, words=words, sampling_rate=16000)["word_features"][:, 0]
    np.testing.assert_allclose(at_edges, plain, rtol=0.03)


def test_telephone_quality_8khz_gives_the_same_f0_and_words():
    row = ROWS[0]
    narrow = load(row, rate=8000)  # band-limited to 4 kHz, as a telephone line
    words = row["text"].split()
    extractor = CMBertFeatureExtractor(features=["f0", "duration"], **RAW)
    telephone = extractor(narrow, words=words, sampling_rate=8000)["word_features"]
    wide = extractor(load(row), words=words, sampling_rate=16000)["word_features"]
    semitones = 12 * np.log2(telephone[:, 0] / wide[:, 0])
    assert (np.abs(semitones) <= 1).all()
    np.testing.assert_allclose(telephone[:, 1], wide[:, 1], atol=0.06)


def test_first_extraction_needs_no_jit_compiled_library():
    # librosa's numba kernels compiled on first use made the first extraction after an install take a minute.
    code = (
        "import sys; from cmbert_hf import CMBertFeatureExtractor; "
        f"CMBertFeatureExtractor(do_normalize=False)({str(FOLDER / ROWS[1]['file_name'])!r}, "
        "word_timings=[('mary', 0.3, 0.7)]); "
        "print(sorted(m for m in ('numba', 'librosa') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_loud_noise_outside_the_words_is_not_taken_for_untranscribed_speech():
    # 1.5 s of noise (a cough, a fan) louder than the speech, after the last word: the transcript still fits (only
    # voiced frames count as speech the words must cover), while the same clip with its transcript cut is refused.
    row = ROWS[0]
    waveform = load(row)
    burst = np.random.default_rng(0).standard_normal(24000) * np.sqrt(np.mean(waveform**2)) * 2
    noisy = np.concatenate([waveform, burst.astype(np.float32), np.zeros(1600, np.float32)])
    words = row["text"].split()
    errors = boundary_errors([(align_words(noisy, words), row["true_timings"])])
    assert np.median(errors) <= 0.03
    with pytest.raises(ValueError, match="outside the aligned words"):
        align_words(noisy, words[:4])


def test_whispered_speech_gets_no_invented_pitch_or_a_clear_line(tmp_path):
    # A whisper of the ARCTIC clip: its short-time spectral envelopes (magnitudes smoothed over 10 bins, 310 Hz, which
    # removes the harmonics) with random phases. The extractor gives features without a pitch or one line naming the file.
    from scipy.ndimage import uniform_filter1d
    from scipy.signal import istft, stft

    row = ROWS[0]
    _, _, spectra = stft(load(row), fs=16000, nperseg=512)
    envelopes = uniform_filter1d(np.abs(spectra), size=10, axis=0)
    phases = np.exp(2j * np.pi * np.random.default_rng(0).random(spectra.shape))
    _, whisper = istft(envelopes * phases, fs=16000, nperseg=512)
    path = tmp_path / "whisper.wav"
    sf.write(path, (0.5 * whisper / np.abs(whisper).max()).astype(np.float32), 16000)
    extractor = CMBertFeatureExtractor(features=["f0", "voiced"], **RAW)
    try:
        features = extractor(str(path), words=row["text"].split())["word_features"]
    except ValueError as error:
        assert "whisper.wav" in str(error) and "\n" not in str(error)
    else:
        assert np.mean(features[:, 1]) < 0.2  # hardly a voiced frame
        assert np.mean(features[:, 0] == 0) >= 0.5  # most words get no f0 rather than one read from noise
