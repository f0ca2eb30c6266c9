"""Text + audio sentiment with CM-BERT as a transformers `Pipeline`.

CM-BERT (Yang et al., "CM-BERT: Cross-Modal BERT for Text-Audio Sentiment Analysis", ACM MM 2020) regresses one
sentiment score in [-3, 3] per utterance, the CMU-MOSI scale. This pipeline turns text plus (optional) audio into
that score, its 7-class name and its polarity, and can return the attention maps the paper visualises.

It imports only numpy, torch, transformers and the config file beside it, so it ships as remote code with the
model files: the model and the processor come from the Auto classes, never from this package.
"""

import os

import torch

from transformers import Pipeline
from transformers.utils import logging

from .configuration_cmbert import LABEL7_NAMES, TASK, sentiment_class
from .processing_cmbert import check_audio_given
from .transcription_cmbert import DEFAULT_ASR_MODEL, SAMPLING_RATE, transcribe_file


logger = logging.get_logger(__name__)


POLARITIES = ("negative", "neutral", "positive")


def score_to_label(score: float) -> tuple[str, str]:
    """The 7-class name of a score (`sentiment_class`: `round(clip(score, -3, 3))`, numpy's halves-to-even) and its
    polarity, the side of `"neutral"` that class lies on: both come from the one rounded class, so a score of -0.04
    is `("neutral", "neutral")`, never a neutral label with a negative polarity."""
    index = int(sentiment_class(score))
    return LABEL7_NAMES[index], POLARITIES[(index > 3) - (index < 3) + 1]


class CMBertSentimentPipeline(Pipeline):
    r"""
    Multimodal sentiment analysis with a CM-BERT regression model (`num_labels == 1`) and its [`CMBertProcessor`].

    Each input is a string (text only) or a dict with `"text"` and optionally one of:

    - `"audio_features"`: word-level acoustic features `[n_words, audio_feature_size]` (words split on white
      space), or position-aligned ones `[L, audio_feature_size]` with `"audio_level": "token"`;
    - `"audio"`: a waveform (with `"sampling_rate"`) or a path to an audio file, and optionally `"word_timings"`
      (`(word, start_s, end_s)` per word); the processor's feature extractor computes the features.

    An input without audio is refused by a model trained with audio unless `text_only=True` is passed: the model then
    sees zero audio features, exactly its text-only forward (`audio_features=None`), an input it was not trained on.
    Raw `"audio"` is accepted only by a model trained on this feature extractor's features (its config's
    `audio_feature_source` is `"extractor"`, with the same feature names, and the extractor is fitted); a model
    trained on precomputed features takes `"audio_features"`. A model trained without audio
    (`audio_feature_source="none"`) ignores any audio, with one warning.

    Returns, per input, a dict with `"score"` (the regression output, the value every metric scores), `"label"`
    (the 7-class name of CMU-MOSI's Acc7, from the rounded clipped score) and `"polarity"` (`"negative"`, `"neutral"`
    or `"positive"`: the side of neutral that label lies on, so the two never contradict; the binary accuracies
    score the raw sign instead, see `metrics.py`). With `return_attention=True` it adds `"tokens"` (the word-pieces, special tokens
    included, padding excluded) and the `"text_attention"` (`alpha`) and `"multimodal_attention"` (`W_m`) matrices
    over them, as `np.ndarray` of shape `[n_tokens, n_tokens]`.

    A dict with only `"audio"`, a path to a recording or a video of any length (no transcript), returns one dict
    per utterance instead, in spoken order: `"start"` and `"end"` (seconds), `"text"` (Whisper's transcript,
    `transcription_cmbert.py`) and the scores above; `asr_model` names the faster-whisper model (default
    `"base"`). A file without speech gives `[]`.

    Batches (`batch_size > 1`) give the same scores as one input at a time for models with per-sample scaling
    (`text_scaling` and `audio_scaling` not `"batch"`; the defaults); the original `"batch"` scaling makes every score depend on its batch.

    Example:

    ```python
    >>> from transformers import pipeline

    >>> # A saved folder or Hub repo names this pipeline in its config (`custom_pipelines`), which transformers runs
    >>> # only when trusted; with `cmbert_hf` installed, `pipeline_class=CMBertSentimentPipeline` runs the package's.
    >>> pipe = pipeline(model="you/cm-bert", revision="<commit>", trust_remote_code=True)
    >>> pipe({"text": "what a great movie", "audio": "clip.wav", "word_timings": [("what", 0.1, 0.3), ...]})
    {'score': 2.1, 'label': 'positive', 'polarity': 'positive'}
    ```

    Args:
        max_length (`int`, *optional*):
            Truncation length in word-pieces; defaults to the processor's, the one the model was trained with.
        return_attention (`bool`, *optional*, defaults to `False`):
            Whether to return the tokens and both attention matrices.
        text_only (`bool`, *optional*, defaults to `False`):
            Score inputs without audio on their text alone, also with a model trained with audio (inputs with
            audio still use it).
        check_transcript (`bool`, *optional*, defaults to `True`):
            For `"audio"` without `"word_timings"`: refuse a text that does not fit its audio (the transcript check
            of forced alignment); `False` scores it on the aligned spans as they are.
    """

    _load_processor = True
    _load_tokenizer = False
    _load_feature_extractor = False
    _load_image_processor = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.model.config.num_labels != 1:
            raise ValueError(
                f"{type(self).__name__} needs a regression model (num_labels=1), got num_labels="
                f"{self.model.config.num_labels}."
            )
        if self.processor.audio_feature_size != self.model.config.audio_feature_size:
            raise ValueError(
                f"The processor makes audio vectors of {self.processor.audio_feature_size} features but the model "
                f"takes {self.model.config.audio_feature_size} (`audio_feature_size`): load both from one folder."
            )
        self._warned_audio_ignored = False

    def __call__(self, inputs, *args, asr_model=DEFAULT_ASR_MODEL, **kwargs):
        if isinstance(inputs, dict) and set(inputs) == {"audio"} and isinstance(inputs["audio"], (str, os.PathLike)):
            return list(self.timeline(inputs["audio"], asr_model, **kwargs))
        return super().__call__(inputs, *args, **kwargs)

    def timeline(self, path, asr_model=DEFAULT_ASR_MODEL, **kwargs):
        """Yields one dict per utterance of the recording or video at `path` (see the class docstring), as its
        utterances are transcribed: the file is read block by block, so memory does not grow with its length."""
        for utterance, audio in transcribe_file(path, asr_model):
            timings = [(word, a - utterance.start, b - utterance.start) for word, a, b in utterance.words]
            example = {"text": utterance.text, "audio": audio, "sampling_rate": SAMPLING_RATE, "word_timings": timings}
            scored = super().__call__(example, **kwargs)
            yield {"start": utterance.start, "end": utterance.end, "text": utterance.text, **scored}

    def _sanitize_parameters(self, max_length=None, return_attention=None, text_only=None, check_transcript=None):
        preprocess = {} if max_length is None else {"max_length": max_length}
        if text_only is not None:
            preprocess["text_only"] = text_only
        if check_transcript is not None:
            preprocess["check_transcript"] = check_transcript
        forward = {} if return_attention is None else {"return_attention": return_attention}
        postprocess = {} if return_attention is None else {"return_attention": return_attention}
        return preprocess, forward, postprocess

    def preprocess(self, inputs, max_length=None, text_only=False, check_transcript=True):
        if isinstance(inputs, str):
            inputs = {"text": inputs}
        if not isinstance(inputs, dict) or not isinstance(inputs.get("text"), str):
            raise ValueError(f"Each input must be a string or a dict with a 'text' string, got {inputs!r}.")
        unknown = set(inputs) - {"text", "audio_features", "audio_level", "audio", "sampling_rate", "word_timings"}
        if unknown:
            raise ValueError(f"Unknown input keys {sorted(unknown)}.")
        config = self.model.config
        if config.audio_feature_source == "none" and any(inputs.get(k) is not None for k in ("audio", "audio_features")):
            if not self._warned_audio_ignored:
                logger.warning("This model was trained without audio (text only): the audio given is ignored.")
                self._warned_audio_ignored = True
            inputs = {"text": inputs["text"]}
        has_audio = any(inputs.get(k) is not None for k in ("audio", "audio_features"))
        # The model's record decides, not the processor's (a processor built apart from the model may say otherwise).
        check_audio_given(config.audio_feature_source, has_audio, text_only)
        if inputs.get("audio") is not None:
            # The model's record decides which features it takes (the processor checks its own as well).
            self.processor.check_raw_audio(
                config.audio_feature_source, config.audio_feature_names, config.audio_feature_size
            )
        # A batch of one gives [1, L] tensors, the shape the pipeline's collator pads and stacks. The processor
        # checks the audio (and refuses `audio` together with `audio_features`).
        audio = {}
        if inputs.get("audio") is not None:
            audio.update(audio=[inputs["audio"]], sampling_rate=inputs.get("sampling_rate"))
            if inputs.get("word_timings") is not None:
                audio["word_timings"] = [inputs["word_timings"]]
            if not check_transcript:  # only then: the remote code of models pushed before knows no such argument
                audio["check_transcript"] = False
        if inputs.get("audio_features") is not None:
            audio.update(audio_features=[inputs["audio_features"]], audio_level=inputs.get("audio_level", "word"))
        encoding = self.processor(
            text=[inputs["text"]], max_length=max_length, return_tensors="pt", text_only=not has_audio, **audio
        )
        if "audio_features" not in encoding:
            # Zero rows are the model's text-only input; always sending them keeps every item's keys alike for batching.
            width = self.processor.audio_feature_size
            encoding["audio_features"] = torch.zeros(*encoding["input_ids"].shape, width)
        return dict(encoding)

    def _forward(self, model_inputs, return_attention=False):
        outputs = self.model(**model_inputs, output_attentions=return_attention)
        result = {"logits": outputs.logits, "input_ids": model_inputs["input_ids"]}
        result["attention_mask"] = model_inputs["attention_mask"]
        if return_attention:
            result["text_attention"] = outputs.text_attention
            result["multimodal_attention"] = outputs.multimodal_attention
        return result

    def postprocess(self, model_outputs, return_attention=False):
        score = float(model_outputs["logits"][0, 0].item())
        label, polarity = score_to_label(score)
        result = {"score": score, "label": label, "polarity": polarity}
        if return_attention:
            # Batches are padded to their longest input: keep the real tokens only.
            real = model_outputs["attention_mask"][0].bool()
            result["tokens"] = self.tokenizer.convert_ids_to_tokens(model_outputs["input_ids"][0][real].tolist())
            for key in ("text_attention", "multimodal_attention"):
                result[key] = model_outputs[key][0][real][:, real].float().numpy()
        return result


__all__ = ["CMBertSentimentPipeline", "LABEL7_NAMES", "POLARITIES", "TASK", "score_to_label"]
