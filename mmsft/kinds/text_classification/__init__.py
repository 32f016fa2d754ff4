"""The ``text_classification`` kind: data schema and reading, heads, evaluation, data-check and
augmentation bindings."""
from .data import TextClassificationData, build_splits, read_split  # noqa: F401
from .kind import TextClassification  # noqa: F401
