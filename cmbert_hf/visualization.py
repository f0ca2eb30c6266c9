"""Attention pictures like Figure 4 of CM-BERT (Yang et al., ACM MM 2020).

For one utterance the paper shows the text attention `alpha` beside the masked multimodal attention `W_m`: where
audio makes the model weigh words differently from text alone. Both maps come from [`CMBertSentimentPipeline`]
with `return_attention=True`, so tokenisation and audio alignment are the processor's.

`alpha = ReLU(t t^T)` of the scaled text projections is a non-negative affinity, not a distribution (its rows do not
sum to 1 and its scale is the model's), so it is drawn under that name with its own colour scale. `W_m` is the
softmax of `w_t alpha + w_a beta + b`, each row a distribution over the keys; the score is read from the fused
`[CLS]` position, so the `[CLS]` row of `W_m` is the one that decides it, and it is framed.
"""

import numpy as np

# A bare Figure, not pyplot: no display backend or global figure list is touched, and `savefig` renders with Agg.
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .configuration_cmbert import MAX_LENGTH
from .pipeline_cmbert import CMBertSentimentPipeline


# (result key, panel title, colour bar label)
PANELS = (
    ("text_attention", r"text affinity $\alpha$ = ReLU(text $\cdot$ text$^T$)", r"$\alpha$ (unnormalised, $\geq 0$)"),
    ("multimodal_attention", r"multimodal attention $W_m$", "weight (each row sums to 1)"),
)
CLS_NOTE = "red frame: the [CLS] row, the only one the score is read from"


def attention_figure(result: dict, figsize: tuple[float, float] | None = None, dpi: int = 100) -> Figure:
    r"""
    Draws side-by-side heatmaps of a pipeline result's two attention matrices, word-pieces on both axes.

    Args:
        result (`dict`):
            One output of [`CMBertSentimentPipeline`] called with `return_attention=True`.
        figsize (`tuple[float, float]`, *optional*):
            Width and height in inches; defaults to a size that grows with the number of tokens.
        dpi (`int`, *optional*, defaults to 100):
            Pixels per inch of the figure (and of the saved PNG).

    Returns:
        `matplotlib.figure.Figure`: rows are queries, columns keys, the `[CLS]` row framed in both panels; the title
        holds the score and its label.
    """
    missing = {"tokens", *(key for key, _, _ in PANELS)} - set(result)
    if missing:
        raise ValueError(f"The result lacks {sorted(missing)}: call the pipeline with `return_attention=True`.")
    tokens = result["tokens"]
    side = max(4.0, 0.3 * len(tokens) + 1.5)
    figure = Figure(figsize=figsize or (2 * side + 1.5, side), dpi=dpi, layout="constrained")
    axes = figure.subplots(1, 2)
    for axis, (key, title, scale) in zip(axes, PANELS, strict=True):
        matrix = np.asarray(result[key])
        if matrix.shape != (len(tokens), len(tokens)):
            expected = (len(tokens), len(tokens))
            raise ValueError(f"`{key}` has shape {matrix.shape}, expected {expected} for the tokens.")
        image = axis.imshow(matrix, cmap="viridis")
        axis.set_title(title)
        axis.set_xticks(range(len(tokens)), tokens, rotation=90)
        axis.set_yticks(range(len(tokens)), tokens)
        axis.set_xlabel("key: word-piece attended to")
        axis.set_ylabel("query: word-piece attending")
        # Row 0 is [CLS], the position the regression head reads.
        axis.add_patch(Rectangle((-0.5, -0.5), len(tokens), 1, fill=False, edgecolor="red", linewidth=2))
        figure.colorbar(image, ax=axis, shrink=0.8, label=scale)
    figure.suptitle(f"score {result['score']:+.2f} ({result['label']})\n{CLS_NOTE}")
    return figure


def plot_attention(
    model,
    processor,
    text: str,
    audio_features=None,
    audio=None,
    sampling_rate: int | None = None,
    word_timings=None,
    text_only: bool = False,
    max_length: int = MAX_LENGTH,
    figsize: tuple[float, float] | None = None,
    dpi: int = 100,
) -> Figure:
    r"""
    Runs one utterance through `model` and draws its attention maps (see [`attention_figure`]).

    Args:
        model ([`CMBertForSequenceClassification`]):
            A regression model (`num_labels == 1`).
        processor ([`CMBertProcessor`]):
            Its processor.
        text (`str`):
            The utterance.
        audio_features, audio, sampling_rate, word_timings:
            The optional audio, as the pipeline's input keys of the same names.
        text_only (`bool`, *optional*, defaults to `False`):
            Draw a model trained with audio on the text alone (without it such a model refuses text without audio).
        max_length (`int`, *optional*, defaults to 50):
            Truncation length in word-pieces.
        figsize, dpi:
            As in [`attention_figure`].

    Returns:
        `matplotlib.figure.Figure`; save it with `figure.savefig("attention.png")`.
    """
    inputs = {"text": text, "audio_features": audio_features, "audio": audio}
    inputs.update(sampling_rate=sampling_rate, word_timings=word_timings)
    pipe = CMBertSentimentPipeline(model=model, processor=processor, device=model.device)
    result = pipe(inputs, return_attention=True, max_length=max_length, text_only=text_only)
    return attention_figure(result, figsize=figsize, dpi=dpi)


__all__ = ["attention_figure", "plot_attention"]
