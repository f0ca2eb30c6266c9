"""CMU-MOSI for CM-BERT: `datasets` builders (`mosi.py`), the data facts they declare (`facts.py`), and their export
to a data-only Hub dataset (`export.py`). Imports nothing from `cmbert_hf`."""

from dataset_script.errors import DataError, MissingSourceError, MosiDataError, OptionError, UnknownConfigError
from dataset_script.mosi import Mosi, MosiConfig, MosiRecordings, RecordingsConfig, audio_facts, load_mosi
from dataset_script.safe_pickle import UnsafePickleError

__all__ = [
    "Mosi", "MosiConfig", "MosiRecordings", "RecordingsConfig", "audio_facts", "load_mosi",
    "DataError", "MosiDataError", "MissingSourceError", "OptionError", "UnknownConfigError", "UnsafePickleError",
]  # fmt: skip
