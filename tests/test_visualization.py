"""Attention pictures: both heatmaps hold the model's own maps, with the word-pieces on both axes, saved as PNG."""

import numpy as np
import pytest
import torch
from PIL import Image

from cmbert_hf.visualization import attention_figure, plot_attention
from helpers import word_features


TEXT = "an unwatchably overwrought melodrama"


def test_figure_shows_both_maps_over_the_real_tokens(model_and_processor, tmp_path):
    model, processor = model_and_processor
    features = word_features(TEXT)
    figure = plot_attention(model, processor, TEXT, audio_features=features, figsize=(8, 4), dpi=50)

    # Independent computation: the processor's tokens (no padding here) and the model's maps.
    encoding = processor(text=[TEXT], audio_features=[features], return_tensors="pt")
    tokens = processor.tokenizer.convert_ids_to_tokens(encoding["input_ids"][0])
    assert len(tokens) > len(TEXT.split()) + 2  # some word was split into pieces
    with torch.no_grad():
        output = model(**encoding, output_attentions=True)
    heatmaps = [axis for axis in figure.axes if axis.images]  # the others are colour bars
    titles = [axis.get_title() for axis in heatmaps]
    # alpha is not a distribution: it is not called attention, and W_m's rows are.
    assert "affinity" in titles[0] and "attention" not in titles[0] and titles[1] == r"multimodal attention $W_m$"
    assert not np.allclose(output.text_attention[0].sum(-1), 1) and np.allclose(output.multimodal_attention[0].sum(-1), 1)
    bars = [axis.get_ylabel() for axis in figure.axes if not axis.images]
    assert bars == [r"$\alpha$ (unnormalised, $\geq 0$)", "weight (each row sums to 1)"]
    for axis, expected in zip(heatmaps, (output.text_attention[0], output.multimodal_attention[0]), strict=True):
        np.testing.assert_allclose(axis.images[0].get_array(), expected.numpy(), atol=1e-6)
        assert [label.get_text() for label in axis.get_xticklabels()] == tokens
        assert [label.get_text() for label in axis.get_yticklabels()] == tokens
        assert axis.get_xlabel().startswith("key") and axis.get_ylabel().startswith("query")
        (frame,) = axis.patches  # around the [CLS] row (row 0, all columns), the one the score is read from
        assert (frame.get_xy(), frame.get_width(), frame.get_height()) == ((-0.5, -0.5), len(tokens), 1)
    assert tokens[0] == "[CLS]" and "[CLS] row" in figure.get_suptitle()

    path = tmp_path / "attention.png"
    figure.savefig(path)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (400, 200)  # figsize x dpi


def test_figure_needs_the_attention_maps():
    with pytest.raises(ValueError, match="return_attention=True"):
        attention_figure({"score": 0.1, "label": "neutral", "polarity": "positive"})
