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
    assert [axis.get_title() for axis in heatmaps] == [r"text attention $\alpha$", r"multimodal attention $W_m$"]
    for axis, expected in zip(heatmaps, (output.text_attention[0], output.multimodal_attention[0]), strict=True):
        np.testing.assert_allclose(axis.images[0].get_array(), expected.numpy(), atol=1e-6)
        assert [label.get_text() for label in axis.get_xticklabels()] == tokens
        assert [label.get_text() for label in axis.get_yticklabels()] == tokens

    path = tmp_path / "attention.png"
    figure.savefig(path)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (400, 200)  # figsize x dpi


def test_figure_needs_the_attention_maps():
    with pytest.raises(ValueError, match="return_attention=True"):
        attention_figure({"score": 0.1, "label": "neutral", "polarity": "positive"})
