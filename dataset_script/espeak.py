"""Speech synthesis with espeak-ng through ctypes, with no root and no command-line tool.

The `espeakng-loader` wheel ships `libespeak-ng.so` and its voice data; this module drives the library in its
synchronous mode and collects, besides the waveform, espeak's own word events: the sample at which each word
starts. They are exact by construction, which makes them the reference for judging a forced aligner.

    speech = synthesize("what a <prosody pitch='+50%'>great</prosody> movie", voice="en-us+f3", ssml=True)
    speech.waveform        # float32 [num_samples] in [-1, 1), at speech.sampling_rate (22050 Hz)
    speech.word_timings    # [("what", 0.0, 0.21), ("a", 0.21, 0.27), ("great", ...), ...]

libespeak-ng keeps global state, so calls are serialised by a lock; one process synthesises one utterance at a
time (use processes, not threads, to go faster).
"""

import ctypes
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np


# speak_lib.h constants.
AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_DONT_EXIT = 0x8000  # report errors instead of calling exit()
CHARS_UTF8, SSML, ENDPAUSE = 0x1, 0x10, 0x1000
POS_CHARACTER = 1
EVENT_LIST_TERMINATED, EVENT_WORD, EVENT_MSG_TERMINATED = 0, 1, 6
PARAMETERS = {"rate": 1, "volume": 2, "pitch": 3, "range": 4, "wordgap": 7}
# A word ends where its audio last rises above this fraction of the utterance's peak, before the next word starts.
SILENCE_FRACTION = 0.02
# Stripped from a written word that espeak merged into its neighbour's event.
PUNCTUATION = ".,;:!?\"'()"


class EspeakError(RuntimeError):
    """libespeak-ng could not be loaded, or refused a voice, a parameter or a text."""


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """`espeak_EVENT`; `sample` is the exact output sample of the event (`audio_position` the same in ms)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass
class Speech:
    """One synthesised utterance.

    Attributes:
        waveform (`np.ndarray`): float32 samples in [-1, 1) (espeak's int16 output divided by 32768).
        sampling_rate (`int`): samples per second (22050 for espeak-ng voices).
        word_timings (`list[tuple[str, float, float]]`): `(word, start_s, end_s)` per spoken word, as written in
            the input text. Starts are espeak's word events; an end is the last sample above `SILENCE_FRACTION` of
            the peak before the next word's start (or the end of the audio).
    """

    waveform: np.ndarray
    sampling_rate: int
    word_timings: list[tuple[str, float, float]]


class _Library:
    """The loaded library, initialised once per process."""

    def __init__(self):
        try:
            import espeakng_loader
        except ImportError as error:
            raise EspeakError(
                "espeak-ng synthesis needs the `espeakng-loader` package: pip install 'cmbert-hf[speech]'"
            ) from error
        try:
            self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        except OSError as error:
            raise EspeakError(f"cannot load libespeak-ng from espeakng-loader: {error}") from error
        # espeak wants the folder that holds `espeak-ng-data`.
        data_parent = str(Path(espeakng_loader.get_data_path()).parent).encode()
        self.sampling_rate = self.lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data_parent, INITIALIZE_DONT_EXIT)
        if self.sampling_rate <= 0:
            raise EspeakError(f"espeak_Initialize failed (returned {self.sampling_rate}) with data at {data_parent!r}")
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.chunks, self.events = [], []
        self.callback = _CALLBACK(self._collect)  # kept referenced: the library holds only the pointer
        self.lib.espeak_SetSynthCallback(self.callback)

    def _collect(self, wav, num_samples, events) -> int:
        if num_samples > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        i = 0
        while events[i].type != EVENT_LIST_TERMINATED:
            event = events[i]
            self.events.append((event.type, event.text_position, event.length, event.sample))
            i += 1
        return 0  # go on


_library = None
_lock = threading.Lock()


def _load() -> _Library:
    global _library
    if _library is None:
        _library = _Library()
    return _library


def synthesize(
    text: str, voice: str = "en-us", rate: int = 175, pitch: int = 50, volume: int = 100, ssml: bool = False
) -> Speech:
    """
    Speaks `text` with libespeak-ng and returns the waveform with its word timings.

    Args:
        text (`str`):
            Plain text, or an SSML fragment when `ssml=True` (e.g. `<prosody pitch="+50%">`, `rate="50%"`,
            `volume="x-loud"` around a word; a `<speak>` root is optional).
        voice (`str`, *optional*, defaults to `"en-us"`):
            An espeak voice name, optionally with a variant: `"en-us+m3"`, `"en-us+f3"` (female), ...
        rate (`int`, *optional*, defaults to 175):
            Words per minute (espeak accepts 80-450).
        pitch (`int`, *optional*, defaults to 50):
            Base pitch, 0-100.
        volume (`int`, *optional*, defaults to 100):
            Amplitude, 0-200 (the command line's `-a`).
        ssml (`bool`, *optional*, defaults to `False`):
            Whether `text` holds SSML markup.

    Returns:
        [`Speech`]: the waveform, its sampling rate and one `(word, start_s, end_s)` per spoken word.
    """
    with _lock:
        library = _load()
        lib = library.lib
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise EspeakError(f"espeak-ng has no voice {voice!r}")
        for name, value in (("rate", rate), ("pitch", pitch), ("volume", volume)):
            if lib.espeak_SetParameter(PARAMETERS[name], int(value), 0) != 0:
                raise EspeakError(f"espeak-ng refused {name}={value}")
        library.chunks, library.events = [], []
        data = text.encode()
        flags = CHARS_UTF8 | (SSML if ssml else 0)
        # The buffer must include the terminating NUL; c_char_p passes one.
        status = lib.espeak_Synth(data, len(data) + 1, 0, POS_CHARACTER, 0, flags, None, None)
        if status != 0:
            raise EspeakError(f"espeak_Synth failed (status {status}) on {text!r}")
        chunks, events, sampling_rate = library.chunks, library.events, library.sampling_rate
    waveform = (np.concatenate(chunks) if chunks else np.zeros(0, np.int16)).astype(np.float32) / 32768.0
    return Speech(waveform, sampling_rate, _word_timings(text, events, waveform, sampling_rate))


def _word_timings(text: str, events, waveform: np.ndarray, sampling_rate: int) -> list[tuple[str, float, float]]:
    """Word events -> `(word, start_s, end_s)`; the word is read back from the input at the event's (1-based
    character) position, so SSML markup around it is skipped.

    espeak speaks some word pairs as one word and gives them one event ("did not" as "didn't"): the words of the text
    between one event and the next share that event's span, split in proportion to their lengths, so that every
    written word gets a timing."""
    words = [(pos - 1, text[pos - 1 : pos - 1 + length], sample) for kind, pos, length, sample in events if kind == EVENT_WORD]
    # The text's own words and their positions, SSML markup blanked out (positions kept).
    plain = re.sub(r"<[^>]*>", lambda tag: " " * len(tag.group()), text)
    written = [(match.start(), match.group().strip(PUNCTUATION)) for match in re.finditer(r"\S+", plain)]
    starts = []  # (word, start sample)
    for i, (pos, word, sample) in enumerate(words):
        stop = words[i + 1][2] if i + 1 < len(words) else len(waveform)
        next_pos = words[i + 1][0] if i + 1 < len(words) else len(text)
        merged = [token for start, token in written if pos < start < next_pos and token]
        lengths = np.cumsum([len(word)] + [len(token) for token in merged])
        stop_at = stop if merged else sample  # the share of the span each merged word gets
        shares = sample + (stop_at - sample) * np.concatenate([[0], lengths[:-1]]) / lengths[-1]
        starts += list(zip([word] + merged, shares.round().astype(int).tolist(), strict=True))
    loud = np.flatnonzero(np.abs(waveform) > SILENCE_FRACTION * np.abs(waveform).max()) if waveform.size else []
    timings = []
    for i, (word, start) in enumerate(starts):
        stop = starts[i + 1][1] if i + 1 < len(starts) else len(waveform)
        inside = loud[(loud >= start) & (loud < stop)] if len(loud) else loud
        end = int(inside[-1]) + 1 if len(inside) else stop
        timings.append((word, start / sampling_rate, end / sampling_rate))
    return timings


__all__ = ["synthesize", "Speech", "EspeakError"]
