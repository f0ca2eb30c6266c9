"""CMBertFeatureExtractor on real (synthesised) speech: espeak-ng words joined at known boundaries."""

import json

import librosa
import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from cmbert_hf.feature_extraction_cmbert import DEFAULT_FEATURES, MIN_SECONDS_PER_WORD, CMBertFeatureExtractor
from speech import ESPEAK_RATE, WORDS, join


# Columns of the default feature set.
F0, F0_RANGE, VOICED, ENERGY, ENERGY_PEAK, DURATION = (
    DEFAULT_FEATURES.index(name) for name in ("f0", "f0_range", "voiced", "energy", "energy_peak", "duration")
)
WIDTH = len(DEFAULT_FEATURES)
RAW = {"do_normalize": False}  # unnormalised features: the extractor refuses to normalise before it is fitted
HIGH, LOUD = 1, 2


@pytest.fixture(scope="module")
def utterance(clips):
    return join(clips, pause_after=1)


@pytest.fixture(scope="module")
def features(utterance):
    waveform, timings = utterance
    return CMBertFeatureExtractor()(waveform, word_timings=timings, sampling_rate=ESPEAK_RATE, **RAW)["word_features"]


def words_only(features):
    """The rows of the spoken words, without the pause."""
    return np.delete(features, 2, axis=0)


def test_output_is_one_float32_vector_per_timed_word(utterance, features):
    assert features.shape == (len(utterance[1]), WIDTH)
    assert features.dtype == np.float32
    assert np.isfinite(features).all()


def test_loud_word_has_the_highest_energy(features):
    for column in (ENERGY, ENERGY_PEAK):
        energy = words_only(features)[:, column]
        others = np.delete(energy, LOUD)
        # espeak -a 200 vs -a 60 is about 10 dB louder.
        assert energy[LOUD] > others.max() + 6


def test_high_pitched_word_has_the_highest_f0(features):
    f0 = words_only(features)[:, F0]
    others = np.delete(f0, HIGH)
    assert (others > 50).all()  # the other words are voiced and got a real f0
    assert f0[HIGH] > 1.3 * others.max()


def test_duration_is_the_span_and_a_slowed_word_lasts_longer(clips):
    # The same word spoken at half the rate (librosa's phase vocoder keeps its pitch).
    slowed = librosa.effects.time_stretch(clips[0], rate=0.5)
    waveform, timings = join([clips[0], slowed])
    rows = CMBertFeatureExtractor()(waveform, word_timings=timings, sampling_rate=ESPEAK_RATE, **RAW)["word_features"]
    np.testing.assert_allclose(rows[:, DURATION], [len(clips[0]) / ESPEAK_RATE, len(slowed) / ESPEAK_RATE], rtol=1e-5)
    assert rows[1, DURATION] == pytest.approx(2 * rows[0, DURATION], rel=0.05)
    assert rows[1, F0] == pytest.approx(rows[0, F0], rel=0.2)  # the vocoder keeps the pitch roughly


def test_f0_range_in_semitones(utterance):
    sr = 16000
    t = np.arange(sr) / sr
    steady = 0.3 * np.sin(2 * np.pi * 150 * t)
    # An octave glide 150 -> 300 Hz over 1 s: f0 = 150 * 2**t, so its 10th to 90th percentile span 0.8 octave.
    glide = 0.3 * np.sin(2 * np.pi * 150 * (2**t - 1) / np.log(2))
    waveform = np.concatenate([steady, glide]).astype(np.float32)
    extractor = CMBertFeatureExtractor(features=["f0", "f0_range"])
    rows = extractor(waveform, word_timings=[("a", 0.0, 1.0), ("b", 1.0, 2.0)], sampling_rate=sr, **RAW)
    (steady_f0, steady_range), (glide_f0, glide_range) = rows["word_features"]
    assert steady_f0 == pytest.approx(150, rel=0.02) and steady_range < 0.3
    assert glide_range == pytest.approx(0.8 * 12, abs=0.5)
    assert glide_f0 == pytest.approx(np.median(150 * 2**t), rel=0.03)  # the level is the median: 150 * sqrt(2)


def test_relative_features_are_against_the_utterance_and_ignore_gain_and_voice():
    sr = 16000
    t = np.arange(sr // 2) / sr
    # Three tone "words": 100, 100 and 150 Hz (a stressed word's +50%) at amplitudes 0.1, 0.2, 0.4. The utterance's
    # median voiced f0 is 100 Hz, so f0_rel is 0, 0 and 12 log2(1.5) semitones; its loudest frame is the third word's.
    words = ((100, 0.1), (100, 0.2), (150, 0.4))
    tones = [amplitude * np.sin(2 * np.pi * hz * t) for hz, amplitude in words]
    waveform = np.concatenate(tones).astype(np.float32)
    timings = [("a", 0.05, 0.45), ("b", 0.55, 0.95), ("c", 1.05, 1.45)]  # frames clear of the neighbours
    extractor = CMBertFeatureExtractor(features=["f0_rel", "energy_peak_rel", "energy_peak"])
    rows = extractor(waveform, word_timings=timings, sampling_rate=sr, **RAW)["word_features"]
    np.testing.assert_allclose(rows[:, 0], [0, 0, 12 * np.log2(1.5)], atol=0.05)
    # 0.5 dB: a 32 ms window holds a non-whole number of periods, so a steady tone's frame RMS varies a little.
    np.testing.assert_allclose(rows[:, 1], 20 * np.log10([0.25, 0.5, 1.0]), atol=0.5)
    # A quieter recording of the same speech moves the absolute peak by its gain, not the relative features; so
    # does a voice a fifth higher (the same tones at 1.5x the frequency).
    quiet = extractor(0.1 * waveform, word_timings=timings, sampling_rate=sr, **RAW)["word_features"]
    np.testing.assert_allclose(quiet[:, 2], rows[:, 2] - 20, atol=0.01)
    np.testing.assert_allclose(quiet[:, :2], rows[:, :2], atol=0.01)
    higher = np.concatenate([amplitude * np.sin(2 * np.pi * 1.5 * hz * t) for hz, amplitude in words])
    shifted = extractor(higher.astype(np.float32), word_timings=timings, sampling_rate=sr, **RAW)["word_features"]
    np.testing.assert_allclose(shifted[:, 0], rows[:, 0], atol=0.05)


def test_voicing_separates_periodic_sound_from_noise():
    sr = 16000
    rng = np.random.default_rng(0)
    tone = 0.3 * np.sin(2 * np.pi * 200 * np.arange(sr) / sr)
    noise = 0.3 * rng.standard_normal(sr)
    waveform = np.concatenate([tone, noise]).astype(np.float32)
    rows = CMBertFeatureExtractor(features=["voiced", "f0"])(
        waveform, word_timings=[("tone", 0.05, 0.95), ("noise", 1.05, 1.95)], sampling_rate=sr, **RAW
    )["word_features"]
    assert rows[0, 0] > 0.95 and rows[0, 1] == pytest.approx(200, rel=0.01)
    assert rows[1, 0] < 0.05  # equally loud, but aperiodic


def test_pause_is_unvoiced_and_quiet(features):
    pause, spoken = features[2], words_only(features)
    # Only the frames whose pitch window reaches into the neighbouring words may count as voiced.
    assert pause[VOICED] < 0.2 < 0.5 < spoken[:, VOICED].min()
    assert pause[ENERGY] < spoken[:, ENERGY].min() - 20


def test_f0_is_zero_without_voiced_frames(utterance):
    leading_noise = [("<sil>", 0.0, 0.15)]
    noise = CMBertFeatureExtractor()(utterance[0], word_timings=leading_noise, sampling_rate=ESPEAK_RATE, **RAW)
    assert noise["word_features"][0, F0] == 0
    assert noise["word_features"][0, F0_RANGE] == 0
    assert noise["word_features"][0, VOICED] == 0


def test_span_without_frame_centre_uses_the_nearest_frame(utterance):
    waveform, _ = utterance
    extractor = CMBertFeatureExtractor(features=[name for name in DEFAULT_FEATURES if name != "duration"])
    # Frames sit every 10 ms; [0.5021, 0.5041) holds none and its midpoint is nearest to the frame at 0.50 s.
    short, around = extractor(
        waveform, word_timings=[("a", 0.5021, 0.5041), ("b", 0.4995, 0.5005)], sampling_rate=ESPEAK_RATE, **RAW
    )["word_features"]
    np.testing.assert_array_equal(short, around)


def test_extraction_is_deterministic(utterance, features):
    waveform, timings = utterance
    again = CMBertFeatureExtractor()(waveform.copy(), word_timings=timings, sampling_rate=ESPEAK_RATE, **RAW)
    np.testing.assert_array_equal(again["word_features"], features)


def test_native_16k_input_matches_resampled_22k_input(utterance, features):
    waveform, timings = utterance
    # Resample with scipy, independently of the extractor's librosa resampler.
    at_16k = resample_poly(waveform, 320, 441).astype(np.float32)
    other = CMBertFeatureExtractor()(at_16k, word_timings=timings, sampling_rate=16000, **RAW)["word_features"]
    spoken, other_spoken = words_only(features), words_only(other)
    np.testing.assert_allclose(other_spoken[:, F0], spoken[:, F0], rtol=0.03)
    # The 10th-90th percentile range of a short word's voiced f0 moves with the voicing of a frame or two at its
    # edges, which the two resamplers can tip either way: up to 0.63 semitones seen on these clips.
    np.testing.assert_allclose(other_spoken[:, F0_RANGE], spoken[:, F0_RANGE], atol=1.0)
    np.testing.assert_allclose(other_spoken[:, VOICED], spoken[:, VOICED], atol=0.1)
    np.testing.assert_allclose(other[:, [ENERGY, ENERGY_PEAK]], features[:, [ENERGY, ENERGY_PEAK]], atol=1.0)
    np.testing.assert_allclose(other[:, DURATION], features[:, DURATION], rtol=1e-6)
    mfcc = [DEFAULT_FEATURES.index(name) for name in DEFAULT_FEATURES if name.startswith("mfcc")]
    np.testing.assert_allclose(other_spoken[:, mfcc], spoken[:, mfcc], atol=2.0)


def test_words_without_timings_are_spread_over_the_speech(clips):
    waveform, timings = join(clips)
    extractor = CMBertFeatureExtractor(aligner="proportional")
    words = [word for word, _, _ in timings]
    spread = extractor(waveform, words=words, sampling_rate=ESPEAK_RATE, **RAW)["word_features"]
    timed = extractor(waveform, word_timings=timings, sampling_rate=ESPEAK_RATE, **RAW)["word_features"]
    assert spread.shape == timed.shape == (len(WORDS), WIDTH)
    # The approximate spans still single out the same loud and high-pitched words.
    assert spread[:, ENERGY].argmax() == timed[:, ENERGY].argmax() == LOUD
    assert spread[:, F0].argmax() == timed[:, F0].argmax() == HIGH


def test_pocketsphinx_aligner_times_the_words(clips):
    alignment = pytest.importorskip("cmbert_hf.alignment_cmbert", reason="helper speech's aligner not merged yet")
    waveform, timings = join(clips)
    at_16k = resample_poly(waveform, 320, 441).astype(np.float32)
    words = [word for word, _, _ in timings]
    aligned = alignment.align_words(at_16k, words, sampling_rate=16000)
    # Word boundaries within 0.1 s of where the clips were joined.
    assert [word for word, _, _ in aligned] == words
    np.testing.assert_allclose([span[1:] for span in aligned], [span[1:] for span in timings], atol=0.1)
    from_words = CMBertFeatureExtractor(aligner="pocketsphinx")(at_16k, words=words, sampling_rate=16000, **RAW)
    from_words = from_words["word_features"]
    true_durations = [end - start for _, start, end in timings]
    np.testing.assert_allclose(from_words[:, DURATION], true_durations, atol=0.15)
    assert from_words[:, ENERGY].argmax() == LOUD and from_words[:, F0].argmax() == HIGH


def test_pocketsphinx_failure_names_the_audio(tmp_path):
    pytest.importorskip("cmbert_hf.alignment_cmbert", reason="helper speech's aligner not merged yet")
    path = tmp_path / "noise.wav"
    sf.write(path, 0.1 * np.random.default_rng(0).standard_normal(16000), 16000)
    # Ten words cannot be placed in one second of noise.
    words = ["absolutely"] * 10 + ["wonderful"] * 10
    # One line naming the file, pointing at what the command line can do about it (not the Python-only aligner option).
    with pytest.raises(ValueError, match=r"^The audio '.*noise\.wav': .*check its transcript, or give word timings$"):
        CMBertFeatureExtractor()(str(path), words=words, **RAW)


def test_batch_matches_single_inputs(clips, utterance, features):
    short_waveform, short_timings = join(clips[:2])
    waveform, timings = utterance
    batch = CMBertFeatureExtractor()(
        [waveform, short_waveform], word_timings=[timings, short_timings], sampling_rate=ESPEAK_RATE, **RAW
    )["word_features"]
    assert isinstance(batch, list) and len(batch) == 2
    np.testing.assert_array_equal(batch[0], features)
    single = CMBertFeatureExtractor()(short_waveform, word_timings=short_timings, sampling_rate=ESPEAK_RATE, **RAW)
    np.testing.assert_array_equal(batch[1], single["word_features"])


@pytest.mark.parametrize("suffix", ["wav", "flac"])
def test_reads_audio_files_and_audio_dicts(tmp_path, utterance, features, suffix):
    waveform, timings = utterance
    path = tmp_path / f"clip.{suffix}"
    sf.write(path, waveform, ESPEAK_RATE, subtype="PCM_24")
    extractor = CMBertFeatureExtractor()
    columns = [F0, VOICED, ENERGY, ENERGY_PEAK, DURATION]
    for audio in (str(path), {"path": str(path), "bytes": None}, {"path": None, "bytes": path.read_bytes()}):
        from_file = extractor(audio, word_timings=timings, **RAW)["word_features"]
        np.testing.assert_allclose(words_only(from_file)[:, columns], words_only(features)[:, columns], rtol=1e-3, atol=1e-2)
    as_dict = {"array": waveform, "sampling_rate": ESPEAK_RATE}
    np.testing.assert_array_equal(extractor(as_dict, word_timings=timings, **RAW)["word_features"], features)


def test_feature_set_is_configurable(utterance, features):
    waveform, timings = utterance
    extractor = CMBertFeatureExtractor(features=["energy", "mfcc0", "mfcc12", "duration"])
    assert extractor.feature_size == 4
    custom = extractor(waveform, word_timings=timings, sampling_rate=ESPEAK_RATE, **RAW)["word_features"]
    assert custom.shape == (len(timings), 4)
    np.testing.assert_array_equal(custom[:, [0, 3]], features[:, [ENERGY, DURATION]])


def test_fit_normalization_standardises_and_round_trips(tmp_path, utterance, features):
    waveform, timings = utterance
    extractor = CMBertFeatureExtractor(aligner="proportional")
    with pytest.raises(ValueError, match="no normalisation statistics.*fit_normalization"):
        extractor(waveform, word_timings=timings, sampling_rate=ESPEAK_RATE)
    extractor.fit_normalization([features[:3], features[3:].tolist()])  # arrays or nested lists, pooled
    np.testing.assert_allclose(extractor.feature_mean, features.astype(np.float64).mean(axis=0), rtol=1e-6)
    normalized = extractor(waveform, word_timings=timings, sampling_rate=ESPEAK_RATE)["word_features"]
    np.testing.assert_allclose(normalized.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(normalized.std(axis=0), 1, atol=1e-5)
    np.testing.assert_allclose(extractor.normalize(features), normalized, atol=1e-5)

    extractor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["feature_mean"] == extractor.feature_mean and len(saved["feature_std"]) == WIDTH
    assert saved["features"] == list(DEFAULT_FEATURES) and saved["aligner"] == "proportional"
    loaded = CMBertFeatureExtractor.from_pretrained(tmp_path)
    assert loaded.to_dict() == extractor.to_dict()
    reloaded = loaded(waveform, word_timings=timings, sampling_rate=ESPEAK_RATE)["word_features"]
    np.testing.assert_array_equal(reloaded, normalized)


def test_fit_normalization_refuses_bad_rows():
    with pytest.raises(ValueError, match=rf"Utterance 1: expected word features \[n_words, {WIDTH}\]"):
        CMBertFeatureExtractor().fit_normalization([np.zeros((2, WIDTH)), np.zeros((2, 3))])
    with pytest.raises(ValueError, match="NaN or inf"):
        CMBertFeatureExtractor().fit_normalization([np.full((2, WIDTH), np.nan)])
    with pytest.raises(ValueError, match="no words"):
        CMBertFeatureExtractor().fit_normalization([])


def test_check_feature_size_names_both_widths():
    extractor = CMBertFeatureExtractor()
    extractor.check_feature_size(WIDTH)
    with pytest.raises(ValueError, match=rf"{WIDTH} features.*audio_feature_size=74"):
        extractor.check_feature_size(74)


def test_unreadable_files_are_named(tmp_path):
    junk = tmp_path / "junk.wav"
    junk.write_text("not audio")
    for path in (junk, tmp_path / "missing.flac"):
        with pytest.raises(ValueError, match=rf"Cannot read audio file .*{path.name}"):
            CMBertFeatureExtractor()(str(path), words=["a"], **RAW)


def test_audio_shorter_than_its_words_is_named(tmp_path):
    path = tmp_path / "cut.wav"
    sf.write(path, TONE, 16000, subtype="PCM_16")
    path.write_bytes(path.read_bytes()[:60])  # a WAV header and 8 samples
    with pytest.raises(ValueError, match=r"'.*cut\.wav' lasts 0\.00\d s, too short for its 2 word"):
        CMBertFeatureExtractor()(str(path), words=["hello", "there"], **RAW)
    with pytest.raises(ValueError, match=r"waveform lasts 0\.001 s"):
        CMBertFeatureExtractor()(TONE[:10], word_timings=[("a", 0.0, 0.0005)], sampling_rate=16000, **RAW)
    # The bound is per word: a second holds 20 words at most.
    n_words = int(1 / MIN_SECONDS_PER_WORD)
    CMBertFeatureExtractor(aligner="proportional")(TONE, words=["a"] * n_words, sampling_rate=16000, **RAW)
    with pytest.raises(ValueError, match=f"too short for its {n_words + 1} word"):
        CMBertFeatureExtractor(aligner="proportional")(TONE, words=["a"] * (n_words + 1), sampling_rate=16000, **RAW)


def test_silence_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(path, 1e-4 * np.random.default_rng(0).standard_normal(16000), 16000)  # -80 dB hiss
    with pytest.raises(ValueError, match=r"'.*silence\.wav' is silent \(loudest frame -7\d\.\d dB"):
        CMBertFeatureExtractor()(str(path), word_timings=[("hello", 0.1, 0.5)], **RAW)


def test_non_finite_word_features_name_the_file_and_word(tmp_path, monkeypatch):
    path = tmp_path / "tone.wav"
    sf.write(path, TONE, 16000)
    extractor = CMBertFeatureExtractor(features=["energy", "mfcc1"])
    frame_features = extractor._frame_features

    def broken_mfcc(waveform):  # a NaN in the second half's frames, as a faulty front end would give
        columns, energy = frame_features(waveform)
        columns["mfcc1"][60:] = np.nan
        return columns, energy

    monkeypatch.setattr(extractor, "_frame_features", broken_mfcc)
    timings = [("good", 0.0, 0.5), ("bad", 0.5, 1.0)]
    with pytest.raises(ValueError, match=r"tone\.wav'?: feature 'mfcc1' of word 'bad' is not finite"):
        extractor(str(path), word_timings=timings, **RAW)


TONE = np.sin(2 * np.pi * 150 * np.arange(16000) / 16000).astype(np.float32)  # 1 s


@pytest.mark.parametrize(
    "audio, kwargs, message",
    [
        (np.zeros(0, np.float32), {"words": ["a"]}, "empty"),
        (np.where(np.arange(16000) == 5, np.nan, TONE), {"words": ["a"]}, "NaN or inf"),
        (np.where(np.arange(16000) == 5, np.inf, TONE), {"words": ["a"]}, "NaN or inf"),
        (TONE, {"word_timings": [("a", 0.5, 1.2)]}, "outside the audio duration"),
        (TONE, {"word_timings": [("a", -0.1, 0.2)]}, "outside the audio duration"),
        (TONE, {"word_timings": [("a", 0.5, 0.5)]}, "empty or invalid span"),
        (TONE, {"word_timings": [("a", 0.5)]}, r"\(word, start_s, end_s\)"),
        ([TONE, TONE], {"words": [["a"]]}, "2 audio inputs but 1"),
        (TONE, {"words": ["a"], "word_timings": [("a", 0.1, 0.2)]}, "exactly one of"),
        (TONE[:, None], {"words": ["a"]}, "mono 1-D"),
        (np.zeros(16000, np.float32), {"word_timings": [("a", 0.1, 0.2)]}, "waveform is silent"),
        ({"path": None, "bytes": None}, {"words": ["a"]}, "needs 'array', 'bytes' or 'path'"),
        (TONE, {"words": []}, "comes with no words"),
    ],
)
def test_invalid_inputs_raise(audio, kwargs, message):
    with pytest.raises(ValueError, match=message):
        CMBertFeatureExtractor(aligner="proportional")(audio, sampling_rate=16000, do_normalize=False, **kwargs)


def test_invalid_configuration_raises():
    with pytest.raises(ValueError, match="Unknown feature name.*'pitch'"):
        CMBertFeatureExtractor(features=["f0", "pitch"])
    with pytest.raises(ValueError, match="feature_size=74 does not match"):
        CMBertFeatureExtractor(feature_size=74)
    with pytest.raises(ValueError, match="feature_mean has 2 values"):
        CMBertFeatureExtractor(feature_mean=[0.0, 1.0])
    with pytest.raises(ValueError, match="`aligner` must be one of"):
        CMBertFeatureExtractor(aligner="p2fa")
