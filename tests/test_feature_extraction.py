"""CMBertFeatureExtractor on real (synthesised) speech: espeak-ng words joined at known boundaries."""

import json
import shutil
import subprocess

import librosa
import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from cmbert_hf.feature_extraction_cmbert import CMBertFeatureExtractor


ESPEAK_RATE = 22050  # espeak-ng always writes 22.05 kHz
F0, VOICED, ENERGY = 0, 1, 2  # columns of the default feature set
# (word, espeak pitch, espeak amplitude): one high-pitched word, one loud word.
WORDS = [("movie", 50, 60), ("wonderful", 95, 60), ("really", 50, 200), ("terrible", 50, 60)]
HIGH, LOUD = 1, 2


@pytest.fixture(scope="module")
def clips():
    """Each word spoken alone, as a float32 waveform at 22.05 kHz trimmed to its voiced extent."""
    try:
        from dataset_script.espeak import synthesize

        spoken = [synthesize(word, voice="en", rate=160, pitch=pitch, volume=amplitude) for word, pitch, amplitude in WORDS]
    except (ImportError, RuntimeError) as error:  # EspeakError is a RuntimeError
        pytest.fail(f"espeak-ng synthesis is required for these tests ({error}): pip install -e '.[test]'")
    assert all(speech.sampling_rate == ESPEAK_RATE for speech in spoken)
    return [librosa.effects.trim(speech.waveform, top_db=40)[0] for speech in spoken]


def join(clips, pause_after=None, pause_s=0.4):
    """Joins clips with 0.2 s of faint noise around them (and a pause after clip `pause_after`).

    Returns the waveform and the timings `(word, start_s, end_s)`, the pause included as the word `"<sil>"`.
    """
    rng = np.random.default_rng(0)
    edge = np.zeros(int(0.2 * ESPEAK_RATE), np.float32)
    parts, timings, t = [edge], [], len(edge) / ESPEAK_RATE
    for i, clip in enumerate(clips):
        parts.append(clip)
        timings.append((WORDS[i][0], t, t + len(clip) / ESPEAK_RATE))
        t += len(clip) / ESPEAK_RATE
        if i == pause_after:
            parts.append(np.zeros(int(pause_s * ESPEAK_RATE), np.float32))
            timings.append(("<sil>", t, t + pause_s))
            t += pause_s
    parts.append(edge)
    waveform = np.concatenate(parts)
    return waveform + 1e-4 * rng.standard_normal(len(waveform)).astype(np.float32), timings


@pytest.fixture(scope="module")
def utterance(clips):
    return join(clips, pause_after=1)


@pytest.fixture(scope="module")
def features(utterance):
    waveform, timings = utterance
    return CMBertFeatureExtractor()(waveform, word_timings=timings, sampling_rate=ESPEAK_RATE)["word_features"]


def words_only(features):
    """The rows of the spoken words, without the pause."""
    return np.delete(features, 2, axis=0)


def test_output_is_one_float32_vector_per_timed_word(utterance, features):
    assert features.shape == (len(utterance[1]), 5)
    assert features.dtype == np.float32
    assert np.isfinite(features).all()


def test_loud_word_has_the_highest_energy(features):
    energy = words_only(features)[:, ENERGY]
    others = np.delete(energy, LOUD)
    # espeak -a 200 vs -a 60 is about 10 dB louder.
    assert energy[LOUD] > others.max() + 6


def test_high_pitched_word_has_the_highest_f0(features):
    f0 = words_only(features)[:, F0]
    others = np.delete(f0, HIGH)
    assert (others > 50).all()  # the other words are voiced and got a real f0
    assert f0[HIGH] > 1.3 * others.max()


def test_pause_is_unvoiced_and_quiet(features):
    pause, spoken = features[2], words_only(features)
    # Only the frames whose pitch window reaches into the neighbouring words may count as voiced.
    assert pause[VOICED] < 0.2 < 0.5 < spoken[:, VOICED].min()
    assert pause[ENERGY] < spoken[:, ENERGY].min() - 20


def test_f0_is_zero_without_voiced_frames(utterance):
    leading_noise = [("<sil>", 0.0, 0.15)]
    noise = CMBertFeatureExtractor()(utterance[0], word_timings=leading_noise, sampling_rate=ESPEAK_RATE)
    assert noise["word_features"][0, F0] == 0
    assert noise["word_features"][0, VOICED] == 0


def test_span_without_frame_centre_uses_the_nearest_frame(utterance):
    waveform, _ = utterance
    extractor = CMBertFeatureExtractor()
    # Frames sit every 10 ms; [0.5021, 0.5041) holds none and its midpoint is nearest to the frame at 0.50 s.
    short, around = extractor(
        waveform, word_timings=[("a", 0.5021, 0.5041), ("b", 0.4995, 0.5005)], sampling_rate=ESPEAK_RATE
    )["word_features"]
    np.testing.assert_array_equal(short, around)


def test_extraction_is_deterministic(utterance, features):
    waveform, timings = utterance
    again = CMBertFeatureExtractor()(waveform.copy(), word_timings=timings, sampling_rate=ESPEAK_RATE)
    np.testing.assert_array_equal(again["word_features"], features)


def test_native_16k_input_matches_resampled_22k_input(utterance, features):
    waveform, timings = utterance
    # Resample with scipy, independently of the extractor's librosa resampler.
    at_16k = resample_poly(waveform, 320, 441).astype(np.float32)
    other = CMBertFeatureExtractor()(at_16k, word_timings=timings, sampling_rate=16000)["word_features"]
    spoken, other_spoken = words_only(features), words_only(other)
    np.testing.assert_allclose(other_spoken[:, F0], spoken[:, F0], rtol=0.03)
    np.testing.assert_allclose(other_spoken[:, VOICED], spoken[:, VOICED], atol=0.1)
    np.testing.assert_allclose(other[:, ENERGY], features[:, ENERGY], atol=1.0)
    np.testing.assert_allclose(other_spoken[:, 3:], spoken[:, 3:], atol=2.0)


def test_words_without_timings_are_spread_over_the_speech(clips):
    waveform, timings = join(clips)
    extractor = CMBertFeatureExtractor()
    words = [word for word, _, _ in timings]
    spread = extractor(waveform, words=words, sampling_rate=ESPEAK_RATE)["word_features"]
    timed = extractor(waveform, word_timings=timings, sampling_rate=ESPEAK_RATE)["word_features"]
    assert spread.shape == timed.shape == (len(WORDS), 5)
    # The approximate spans still single out the same loud and high-pitched words.
    assert spread[:, ENERGY].argmax() == timed[:, ENERGY].argmax() == LOUD
    assert spread[:, F0].argmax() == timed[:, F0].argmax() == HIGH


def test_batch_matches_single_inputs(clips, utterance, features):
    short_waveform, short_timings = join(clips[:2])
    waveform, timings = utterance
    batch = CMBertFeatureExtractor()(
        [waveform, short_waveform], word_timings=[timings, short_timings], sampling_rate=ESPEAK_RATE
    )["word_features"]
    assert isinstance(batch, list) and len(batch) == 2
    np.testing.assert_array_equal(batch[0], features)
    single = CMBertFeatureExtractor()(short_waveform, word_timings=short_timings, sampling_rate=ESPEAK_RATE)
    np.testing.assert_array_equal(batch[1], single["word_features"])


@pytest.mark.parametrize("suffix", ["wav", "flac"])
def test_reads_audio_files(tmp_path, utterance, features, suffix):
    waveform, timings = utterance
    path = tmp_path / f"clip.{suffix}"
    sf.write(path, waveform, ESPEAK_RATE, subtype="PCM_24")
    from_file = CMBertFeatureExtractor()(str(path), word_timings=timings)["word_features"]
    spoken = words_only(features)
    np.testing.assert_allclose(words_only(from_file)[:, :3], spoken[:, :3], rtol=1e-3, atol=1e-2)


def test_feature_set_is_configurable(utterance, features):
    waveform, timings = utterance
    extractor = CMBertFeatureExtractor(features=["energy", "mfcc0", "mfcc12"])
    assert extractor.feature_size == 3
    custom = extractor(waveform, word_timings=timings, sampling_rate=ESPEAK_RATE)["word_features"]
    assert custom.shape == (len(timings), 3)
    np.testing.assert_array_equal(custom[:, 0], features[:, ENERGY])


def test_fit_normalization_standardises_and_round_trips(tmp_path, utterance, features):
    waveform, timings = utterance
    extractor = CMBertFeatureExtractor().fit_normalization([(waveform, timings)], sampling_rate=ESPEAK_RATE)
    # Fitting on the raw word features gives the same statistics as fitting on the audio.
    from_arrays = CMBertFeatureExtractor().fit_normalization([features.astype(np.float64)])
    np.testing.assert_allclose(from_arrays.feature_mean, extractor.feature_mean, rtol=1e-6)
    normalized = extractor(waveform, word_timings=timings, sampling_rate=ESPEAK_RATE)["word_features"]
    np.testing.assert_allclose(normalized.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(normalized.std(axis=0), 1, atol=1e-5)
    raw = extractor(waveform, word_timings=timings, sampling_rate=ESPEAK_RATE, do_normalize=False)
    np.testing.assert_array_equal(raw["word_features"], features)

    extractor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["feature_mean"] == extractor.feature_mean and len(saved["feature_std"]) == 5
    assert saved["features"] == ["f0", "voiced", "energy", "mfcc1", "mfcc2"]
    loaded = CMBertFeatureExtractor.from_pretrained(tmp_path)
    assert loaded.to_dict() == extractor.to_dict()
    reloaded = loaded(waveform, word_timings=timings, sampling_rate=ESPEAK_RATE)["word_features"]
    np.testing.assert_array_equal(reloaded, normalized)


def test_check_feature_size_names_both_widths():
    extractor = CMBertFeatureExtractor()
    extractor.check_feature_size(5)
    with pytest.raises(ValueError, match=r"5 features.*audio_feature_size=74"):
        extractor.check_feature_size(74)


def test_unreadable_files_are_named(tmp_path):
    junk = tmp_path / "junk.wav"
    junk.write_text("not audio")
    for path in (junk, tmp_path / "missing.flac"):
        with pytest.raises(ValueError, match=rf"Cannot read audio file .*{path.name}"):
            CMBertFeatureExtractor()(str(path), words=["a"])


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
    ],
)
def test_invalid_inputs_raise(audio, kwargs, message):
    with pytest.raises(ValueError, match=message):
        CMBertFeatureExtractor()(audio, sampling_rate=16000, **kwargs)


def test_invalid_configuration_raises():
    with pytest.raises(ValueError, match="Unknown feature name.*'pitch'"):
        CMBertFeatureExtractor(features=["f0", "pitch"])
    with pytest.raises(ValueError, match="feature_size=74 does not match"):
        CMBertFeatureExtractor(feature_size=74)
    with pytest.raises(ValueError, match="feature_mean has 2 values"):
        CMBertFeatureExtractor(feature_mean=[0.0, 1.0])
