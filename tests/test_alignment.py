"""Forced alignment with pocketsphinx, judged against espeak-ng's own word events."""

import numpy as np
import pytest

from cmbert_hf.alignment_cmbert import AlignmentError, align_words, spread_words
from cmbert_hf.feature_extraction_cmbert import CMBertFeatureExtractor
from speech import speak


SENTENCES = [
    ("i think the movie was really great", "en-us", 170),
    ("the acting was so boring and the plot is dull", "en-us+f3", 150),
    ("it is a wonderful film but the story is terrible", "en-us+m3", 190),
    ("very funny and nice movie", "en-us+f4", 160),
]


@pytest.fixture(scope="module")
def spoken():
    return [(speak(text, voice=voice, rate=rate), text.split()) for text, voice, rate in SENTENCES]


def test_boundaries_match_espeaks_word_events(spoken):
    starts, ends = [], []
    for speech, words in spoken:
        aligned = align_words(speech.waveform, [w.upper() for w in words], speech.sampling_rate)
        assert [w for w, _, _ in aligned] == [w.upper() for w in words]  # the words as given, in order
        for (_, start, end), (_, true_start, true_end) in zip(aligned, speech.word_timings):
            assert 0 <= start < end <= len(speech.waveform) / speech.sampling_rate
            starts.append(abs(start - true_start))
            ends.append(abs(end - true_end))
    assert np.median(starts) < 0.03 and np.median(ends) < 0.03
    assert np.mean(np.array(starts) < 0.1) > 0.9


def test_resampled_input_aligns_alike(spoken):
    import librosa

    speech, words = spoken[0]
    native = align_words(speech.waveform, words, speech.sampling_rate)
    at_16k = align_words(librosa.resample(speech.waveform, orig_sr=speech.sampling_rate, target_sr=16000), words)
    np.testing.assert_allclose([t[1:] for t in at_16k], [t[1:] for t in native], atol=0.021)


def test_unknown_word_is_named(spoken):
    speech, words = spoken[0]
    with pytest.raises(AlignmentError, match="'zorblax' is not in pocketsphinx's pronunciation dictionary"):
        align_words(speech.waveform, words[:-1] + ["zorblax"], speech.sampling_rate)


def test_mismatched_transcript_is_an_error_or_a_counted_fallback(spoken):
    speech, words = spoken[0]
    # A transcript three times longer than what is said cannot be placed in full.
    wrong = ("the acting was so boring and the plot is dull " * 3).split()
    with pytest.raises(AlignmentError, match=r"placed \d+ of 30 words and lost"):
        align_words(speech.waveform, wrong, speech.sampling_rate)
    extractor = CMBertFeatureExtractor(do_normalize=False)
    # Inference names the input; training data extraction spreads the words instead, and says so.
    with pytest.raises(ValueError, match=r"clip\.wav: the aligner placed \d+ of 30 words"):
        extractor.word_features(speech.waveform, wrong, speech.sampling_rate, name="clip.wav")
    features, timing = extractor.word_features(
        speech.waveform, wrong, speech.sampling_rate, spread_unaligned=True, return_timing=True
    )
    assert timing == "spread"
    at_16k = extractor._load(speech.waveform, speech.sampling_rate, None)[0]
    np.testing.assert_array_equal(features, extractor.word_features(at_16k, spread_words(at_16k, wrong), 16000))
    # An utterance that aligns is not spread, with or without the fallback.
    aligned, timing = extractor.word_features(
        speech.waveform, words, speech.sampling_rate, spread_unaligned=True, return_timing=True
    )
    assert timing == "aligned"
    np.testing.assert_array_equal(aligned, extractor.word_features(speech.waveform, words, speech.sampling_rate))


def test_spread_covers_the_voiced_span_in_proportion_to_word_length(spoken):
    speech, words = spoken[1]
    rate = speech.sampling_rate
    spread = spread_words(speech.waveform, words, rate)
    assert [w for w, _, _ in spread] == words
    bounds = np.array([(a, b) for _, a, b in spread])
    np.testing.assert_allclose(bounds[1:, 0], bounds[:-1, 1])  # contiguous
    durations = bounds[:, 1] - bounds[:, 0]
    np.testing.assert_allclose(durations / durations.sum(), [len(w) / len("".join(words)) for w in words])
    loud = np.flatnonzero(np.abs(speech.waveform) > 0.01 * np.abs(speech.waveform).max())
    assert abs(bounds[0, 0] - loud[0] / rate) < 0.03 and abs(bounds[-1, 1] - loud[-1] / rate) < 0.03


@pytest.mark.parametrize(
    "waveform, message",
    [(np.zeros(0), "non-empty mono"), (np.full(100, np.nan), "NaN or inf"), (np.zeros((2, 100)), "non-empty mono")],
)
def test_bad_waveforms(waveform, message):
    with pytest.raises(ValueError, match=message):
        align_words(waveform, ["movie"])


def test_words_espeak_speaks_as_one_each_get_a_timing():
    text = "i really did not like this movie at all"
    speech = speak(text)
    # espeak gives "did not" one word event; every written word must still get its span.
    assert [word for word, _, _ in speech.word_timings] == text.split()
    (_, did_start, did_end), (_, not_start, not_end), (_, like_start, _) = speech.word_timings[2:5]
    assert did_start < did_end <= not_start < not_end <= like_start
    # The split of the merged event agrees with where the aligner, on its own, hears "not" begin.
    aligned = align_words(speech.waveform, text.split(), speech.sampling_rate)
    assert abs(aligned[3][1] - not_start) < 0.08


@pytest.mark.parametrize(
    "sentence, shuffled, squeezed",
    [(0, "i think the was movie really great", "movie"), (3, "very and funny nice movie", "and")],
)
def test_words_out_of_order_are_refused_naming_the_word(spoken, sentence, shuffled, squeezed):
    speech, words = spoken[sentence]
    align_words(speech.waveform, words, speech.sampling_rate)  # the spoken order fits
    # A word moved to where it is not said is squeezed into its fewest frames there; every other measure passes.
    with pytest.raises(AlignmentError, match=rf"^the transcript does not fit the audio: the words \['{squeezed}'\] are "
                       r"squeezed .* are the words in the spoken order\?$"):
        align_words(speech.waveform, shuffled.split(), speech.sampling_rate)
