"""Long recordings the tests (and bench/bench_timeline.py) build themselves: espeak-ng utterances separated by
pauses, written as WAV or as an MP4 with an AAC audio track and a video track (PyAV, no system FFmpeg); and the
word error rate they are scored with."""

from fractions import Fraction

import numpy as np
import soundfile as sf

from cmbert_hf.alignment_cmbert import normalize_word


def join_utterances(speeches, pauses):
    """Joins `Speech`es (one sampling rate) with `pauses[i]` seconds of silence before utterance i and after the
    last. Returns the waveform and per utterance `(text, start_s, end_s)`: its first word's start to its last
    word's end (espeak's word events)."""
    rate = speeches[0].sampling_rate
    parts, truth, t = [], [], 0.0
    for speech, pause in zip(speeches, pauses[: len(speeches)], strict=True):
        parts += [np.zeros(round(pause * rate), np.float32), speech.waveform]
        t += round(pause * rate) / rate
        text = " ".join(word for word, _, _ in speech.word_timings)
        truth.append((text, t + speech.word_timings[0][1], t + speech.word_timings[-1][2]))
        t += len(speech.waveform) / rate
    parts.append(np.zeros(round(pauses[-1] * rate), np.float32))
    return np.concatenate(parts), truth


def write_wav(path, waveform, rate):
    sf.write(str(path), waveform, rate)
    return path


def write_mp4(path, waveform=None, rate=16000, seconds=None, fps=5):
    """An MP4 with a small H.264 video track (a grey frame that darkens) and, given a waveform, its AAC audio."""
    import av

    seconds = seconds if seconds is not None else len(waveform) / rate
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=fps)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = None
        if waveform is not None:
            audio = container.add_stream("aac", rate=rate)
            audio.layout = "mono"
        for i in range(max(1, round(seconds * fps))):
            image = np.full((48, 64, 3), 200 - i % 150, np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            container.mux(video.encode(frame))
        container.mux(video.encode())
        if audio is not None:
            samples = (np.clip(waveform, -1, 1) * 32767).astype(np.int16)
            step = 1024
            for start in range(0, len(samples), step):
                frame = av.AudioFrame.from_ndarray(samples[None, start : start + step], format="s16", layout="mono")
                frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
                container.mux(audio.encode(frame))
            container.mux(audio.encode())
    return path


def words(text):
    return [w for w in (normalize_word(word) for word in text.split()) if w]


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(substitutions + deletions + insertions, reference words) between two texts, case and punctuation ignored."""
    ref, hyp = words(reference), words(hypothesis)
    distance = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        previous, distance[0] = distance[0], i
        for j, h in enumerate(hyp, start=1):
            previous, distance[j] = distance[j], min(distance[j] + 1, distance[j - 1] + 1, previous + (r != h))
    return distance[-1], len(ref)
