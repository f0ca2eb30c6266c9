"""CMU-MOSI for CM-BERT: a `datasets` builder (`mosi.py`) and its export to a data-only Hub dataset (`export.py`)."""

from dataset_script.mosi import Mosi, MosiConfig, load_mosi
from dataset_script.safe_pickle import UnsafePickleError
from dataset_script.sources import MissingSourceError, MosiDataError

__all__ = ["Mosi", "MosiConfig", "load_mosi", "MosiDataError", "MissingSourceError", "UnsafePickleError"]
