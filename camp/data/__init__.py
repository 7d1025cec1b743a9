"""Fine-tuning data: the self-cognition set builder (self_cognition) and the record formats with their
converters and a validator that names every bad record (records)."""

from camp.data.identity import IDENTITY_QUESTIONS, identity_answer, self_cognition
from camp.data.records import (
    FORMATS,
    READ_FORMATS,
    DataError,
    convert,
    detect_format,
    load,
    save,
    split,
    to_alpaca,
    to_messages,
    to_xtuner,
    validate,
)

__all__ = ["FORMATS", "READ_FORMATS", "DataError", "convert", "detect_format", "load", "save", "split", "to_alpaca",
           "to_messages", "to_xtuner", "validate", "IDENTITY_QUESTIONS", "identity_answer", "self_cognition"]
