"""CMBertSentimentPipeline: scores against the model's own forward, labels, batching, audio, remote code."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf
import torch
from huggingface_hub import HfApi
from helpers import COVAREP, TEXT_ONLY, TEXTS, TIMINGS, TONE, variant, word_features
from speech import ESPEAK_RATE, join
from transformers import pipeline

from cmbert_hf import CMBertConfig, CMBertForSequenceClassification, CMBertProcessor, CMBertSentimentPipeline
from cmbert_hf.pipeline_cmbert import TASK, score_to_label
from dataset_script import load_mosi


def load(folder):
    return pipeline(TASK, model=str(folder), pipeline_class=CMBertSentimentPipeline, device="cpu")


def manual_forward(model, processor, text, **audio):
    """The model's score and attention maps for one utterance, straight from processor and model."""
    encoding = processor(text=[text], return_tensors="pt", text_only=not audio, **{k: [v] for k, v in audio.items()})
    with torch.no_grad():
        output = model(**encoding, output_attentions=True)
    tokens = processor.tokenizer.convert_ids_to_tokens(encoding["input_ids"][0])
    return output.logits[0, 0].item(), tokens, output.text_attention[0].numpy(), output.multimodal_attention[0].numpy()


def test_labels_are_the_dataset_labels(dataset_cache):
    """The pipeline names a score as the data set names that label (its `label7` class), over a whole split."""
    split = load_mosi("synthetic", cache_dir=str(dataset_cache))["test"]
    named = split.features["label7"].int2str(split["label7"])
    assert [score_to_label(label)[0] for label in split["label"]] == named
    assert len(set(named)) >= 5  # the split spans the scale, not one class


def test_scores_and_attention_equal_the_models_forward(pipe, model_and_processor):
    model, processor = model_and_processor
    for text in TEXTS:
        for audio in ({}, {"audio_features": word_features(text)}):
            expected, tokens, alpha, weights = manual_forward(model, processor, text, **audio)
            result = pipe({"text": text, **audio}, return_attention=True)
            assert result["score"] == pytest.approx(expected, abs=1e-5)
            assert result["tokens"] == tokens and tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
            np.testing.assert_allclose(result["text_attention"], alpha, atol=1e-6)
            np.testing.assert_allclose(result["multimodal_attention"], weights, atol=1e-6)
    # Text only means the model's `audio_features=None` forward, and a plain string is text only.
    encoding = processor(text=[TEXTS[0]], return_tensors="pt", text_only=True)
    with torch.no_grad():
        text_only = model(**encoding).logits[0, 0].item()
    assert pipe(TEXTS[0])["score"] == pytest.approx(text_only, abs=1e-5)
    assert pipe(TEXTS[0]) == pipe({"text": TEXTS[0]})
    assert set(pipe(TEXTS[0])) == {"score", "label", "polarity"}


def test_the_audio_changes_the_score(pipe):
    # The default model puts the mean audio vector at [CLS], so audio reaches the prediction.
    with_audio = pipe({"text": TEXTS[1], "audio_features": word_features(TEXTS[1])})["score"]
    assert abs(with_audio - pipe(TEXTS[1])["score"]) > 1e-4


@pytest.mark.parametrize(
    "logit, score, label, polarity",
    [
        (-3.7, -3.7, "strongly negative", "negative"),  # the score is the output; the label clips it
        (-2.6, -2.6, "strongly negative", "negative"),
        (-1.5, -1.5, "negative", "negative"),  # halves go to the even neighbour: -2
        (-0.51, -0.51, "weakly negative", "negative"),
        (-0.5, -0.5, "neutral", "neutral"),  # -0.5 rounds to -0: the polarity is the label's, never its sign
        (-0.04, -0.04, "neutral", "neutral"),
        (0.0, 0.0, "neutral", "neutral"),
        (0.49, 0.49, "neutral", "neutral"),
        (0.51, 0.51, "weakly positive", "positive"),
        (2.5, 2.5, "positive", "positive"),  # 2.5 rounds to 2
        (3.2, 3.2, "strongly positive", "positive"),
    ],
)
def test_labels_for_hand_chosen_scores(model_and_processor, logit, score, label, polarity):
    model, processor = model_and_processor
    fixed = CMBertForSequenceClassification(model.config).eval()
    with torch.no_grad():  # a head that outputs exactly `logit`, whatever the input
        fixed.classifier.weight.zero_()
        fixed.classifier.bias.fill_(logit)
    result = CMBertSentimentPipeline(model=fixed, processor=processor, device="cpu")(TEXTS[0], text_only=True)
    assert result == {"score": pytest.approx(score), "label": label, "polarity": polarity}


def test_batched_results_equal_one_by_one(pipe):
    inputs = [
        {"text": TEXTS[0], "audio_features": word_features(TEXTS[0], seed=1)},
        TEXTS[1],  # text only, between inputs with audio
        {"text": TEXTS[2], "audio_features": word_features(TEXTS[2], seed=2)},
        {"text": TEXTS[1], "audio_features": word_features(TEXTS[1], seed=3)},
    ]
    one_by_one = [pipe(example, return_attention=True) for example in inputs]
    batched = pipe(inputs, batch_size=3, return_attention=True)  # a full and a partial batch, padded
    assert len(batched) == len(inputs)
    assert len({len(result["tokens"]) for result in one_by_one}) > 1  # padding really happened
    for single, batch in zip(one_by_one, batched, strict=True):
        assert batch["score"] == pytest.approx(single["score"], abs=1e-5)
        assert (batch["label"], batch["tokens"]) == (single["label"], single["tokens"])
        for key in ("text_attention", "multimodal_attention"):
            np.testing.assert_allclose(batch[key], single[key], atol=1e-5)


def test_audio_file_with_word_timings(pipe, model_and_processor, clips, tmp_path):
    model, processor = model_and_processor
    waveform, timings = join(clips)
    text = " ".join(word for word, _, _ in timings)
    path = tmp_path / "speech.wav"
    sf.write(path, waveform, ESPEAK_RATE)
    expected, *_ = manual_forward(model, processor, text, audio=str(path), word_timings=timings)
    from_file = pipe({"text": text, "audio": str(path), "word_timings": timings})
    assert from_file["score"] == pytest.approx(expected, abs=1e-5)
    from_waveform = pipe({"text": text, "audio": waveform, "sampling_rate": ESPEAK_RATE, "word_timings": timings})
    assert from_waveform["score"] == pytest.approx(expected, abs=1e-3)  # the file holds 16-bit samples
    assert abs(from_file["score"] - pipe(text)["score"]) > 1e-4  # the speech was used


def test_bad_inputs_raise_clear_errors(pipe, model_and_processor):
    with pytest.raises(ValueError, match="a dict with a 'text' string"):
        pipe({"audio_features": word_features("a b")})
    with pytest.raises(ValueError, match="a dict with a 'text' string"):
        pipe({"text": ["a", "b"]})
    with pytest.raises(ValueError, match=r"Unknown input keys \['audio_feature'\]"):
        pipe({"text": "a b", "audio_feature": word_features("a b")})
    with pytest.raises(ValueError, match="2 words but 3 word-level audio vectors"):
        pipe({"text": "a b", "audio_features": word_features("a b c")})
    with pytest.raises(ValueError, match="either `audio` or `audio_features`"):
        pipe({"text": "a b", "audio_features": word_features("a b"), "audio": np.zeros(16000), "sampling_rate": 16000})
    model, processor = model_and_processor
    classifier = CMBertForSequenceClassification(CMBertConfig(**{**model.config.to_dict(), "num_labels": 3}))
    with pytest.raises(ValueError, match="regression model"):
        CMBertSentimentPipeline(model=classifier, processor=processor, device="cpu")
    wide = CMBertForSequenceClassification(CMBertConfig(**{**model.config.to_dict(), "audio_feature_size": 74}))
    with pytest.raises(ValueError, match=r"processor makes audio vectors of 5 features but the model takes 74"):
        CMBertSentimentPipeline(model=wide, processor=processor, device="cpu")


TONE_INPUT = {"text": "hello there", "audio": TONE, "sampling_rate": 16000, "word_timings": TIMINGS}
UNRECORDED = {"audio_feature_source": None, "audio_feature_names": None}  # folders saved before provenance


@pytest.mark.parametrize(
    "config, extractor, message",
    [
        (COVAREP, {}, r"trained on precomputed 'covarep' features \(5 per word\).*`audio_features`.*--features"),
        (UNRECORDED, {}, r"whose origin its folder does not record.*--features"),
        ({"audio_feature_names": ["f0", "voiced", "energy", "mfcc1", "mfcc2"]}, {},
         r"trained on the audio features \['f0', 'voiced', 'energy', 'mfcc1', 'mfcc2'\] but the feature extractor"),
        ({}, {"feature_mean": None, "feature_std": None}, "no normalisation statistics.*--features"),
    ],
)  # fmt: skip
def test_raw_audio_is_refused_with_what_the_model_takes(tiny_folder, tmp_path, config, extractor, message):
    pipe = load(variant(tiny_folder, tmp_path / "variant", config, extractor))
    with pytest.raises(ValueError, match=message):
        pipe(TONE_INPUT)
    # Its precomputed features still score, as they did in training.
    assert -3 <= pipe({"text": "hello there", "audio_features": word_features("hello there")})["score"] <= 3


def test_the_fitted_extractor_scores_raw_audio_on_the_training_scale(pipe, model_and_processor):
    model, processor = model_and_processor
    extractor = processor.feature_extractor
    raw = extractor(TONE, word_timings=TIMINGS, sampling_rate=16000, do_normalize=False)["word_features"]
    # What the model sees: standardised with the saved statistics, not Hz and dB.
    normalized = (raw - np.asarray(extractor.feature_mean)) / np.asarray(extractor.feature_std)
    expected, *_ = manual_forward(model, processor, "hello there", audio_features=normalized.astype(np.float32))
    assert pipe(TONE_INPUT)["score"] == pytest.approx(expected, abs=1e-5)


def test_text_only_model_ignores_audio_with_one_warning(tiny_folder, tmp_path, caplog):
    pipe = load(variant(tiny_folder, tmp_path / "text-only", TEXT_ONLY))
    text_only = pipe("hello there")["score"]
    results = pipe([TONE_INPUT, {"text": "hello there", "audio_features": word_features("hello there")}])
    # The tiny model's audio weights are not zero: equal scores mean the audio never reached it.
    assert [result["score"] for result in results] == pytest.approx([text_only] * 2, abs=1e-6)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == ["This model was trained without audio (text only): the audio given is ignored."]


def test_saved_folder_names_and_ships_the_pipeline(tiny_folder, pipe):
    config = json.loads((tiny_folder / "config.json").read_text())
    assert config["custom_pipelines"] == {
        TASK: {
            "impl": "pipeline_cmbert.CMBertSentimentPipeline",
            "pt": ["AutoModelForSequenceClassification"],
            "type": "multimodal",
        }
    }
    assert (tiny_folder / "pipeline_cmbert.py").is_file()
    expected = [pipe(text)["score"] for text in TEXTS]
    # In process: this package's class for the task name; the folder's own copy with trust_remote_code.
    local = pipeline(TASK, model=str(tiny_folder), pipeline_class=CMBertSentimentPipeline, device="cpu")
    remote = pipeline(model=str(tiny_folder), trust_remote_code=True, device="cpu")
    assert type(local) is CMBertSentimentPipeline
    assert type(remote).__module__.startswith("transformers_modules.")
    for loaded in (local, remote):
        assert [result["score"] for result in loaded(TEXTS, text_only=True)] == pytest.approx(expected, abs=1e-6)


FRESH_PROCESS_PIPELINE = textwrap.dedent(
    """
    import json, sys
    sys.modules["cmbert_hf"] = None  # only the repo's code may run
    from transformers import pipeline

    inputs = json.loads(sys.argv[2])
    pipe = pipeline(model="user/cm-bert-pipe", revision=sys.argv[1], trust_remote_code=True, device="cpu")
    print(json.dumps({"class": type(pipe).__module__, "results": pipe(inputs, batch_size=2, text_only=True)}))
    """
)


def test_hub_repo_runs_as_remote_code_in_a_fresh_process(hub_env, tiny_folder, pipe):
    HfApi().create_repo("user/cm-bert-pipe")
    commit = HfApi().upload_folder(repo_id="user/cm-bert-pipe", folder_path=tiny_folder)
    inputs = [TEXTS[0], {"text": TEXTS[1], "audio_features": word_features(TEXTS[1]).tolist()}]
    loaded = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS_PIPELINE, commit.oid, json.dumps(inputs)],
        env=hub_env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    output = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert output["class"].startswith("transformers_modules.")
    expected = pipe(inputs)
    assert [r["score"] for r in output["results"]] == pytest.approx([r["score"] for r in expected], abs=1e-5)
    assert [r["label"] for r in output["results"]] == [r["label"] for r in expected]


@pytest.mark.parametrize("config", [{}, COVAREP])
def test_an_audio_model_given_only_text_refuses_unless_asked(tiny_folder, tmp_path, model_and_processor, config):
    folder = variant(tiny_folder, tmp_path / "variant", config)
    strict = load(folder)
    processor = CMBertProcessor.from_pretrained(folder)
    for score in (lambda: strict(TEXTS[0]), lambda: strict([TEXTS[0]], batch_size=2),
                  lambda: processor(text=TEXTS[0]), lambda: processor(text=TEXTS[:2], padding=True)):  # fmt: skip
        with pytest.raises(ValueError, match=r"trained with audio .* has none: .* pass `text_only=True`"):
            score()
    # Asked for, the text alone is the model's `audio_features=None` forward; audio given is still used.
    model = CMBertForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        expected = model(**processor(text=[TEXTS[0]], return_tensors="pt", text_only=True)).logits[0, 0].item()
    assert strict(TEXTS[0], text_only=True)["score"] == pytest.approx(expected, abs=1e-5)
    with_audio = {"text": TEXTS[0], "audio_features": word_features(TEXTS[0])}
    assert strict(with_audio, text_only=True) == strict(with_audio)


def test_a_text_only_model_needs_no_flag(tiny_folder, tmp_path, model_and_processor):
    assert -3 <= load(variant(tiny_folder, tmp_path / "text-only", TEXT_ONLY))(TEXTS[0])["score"] <= 3
    _, processor = model_and_processor
    for source in ("none", None):  # trained without audio, or folders that do not record it
        text_only = CMBertProcessor(processor.feature_extractor, processor.tokenizer, audio_feature_source=source)
        assert "audio_features" not in text_only(text=TEXTS[0])


def test_a_waveform_without_its_sampling_rate_is_refused(pipe, model_and_processor):
    _, processor = model_and_processor
    with pytest.raises(ValueError, match="bare waveform without its sampling rate: pass `sampling_rate`"):
        pipe({"text": "hello there", "audio": TONE, "word_timings": TIMINGS})
    with pytest.raises(ValueError, match="bare waveform without its sampling rate"):
        processor.feature_extractor(TONE, word_timings=TIMINGS)
