"""Constants the test modules share (importable because pytest puts tests/ on sys.path)."""

from pathlib import Path

# The real CMU-MOSI transcripts, read from ../shared beside the checkout (never copied into the repo).
MOSI_TEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "mosi-text"

# The tiny BERT of transformers' model testers.
TINY = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)
