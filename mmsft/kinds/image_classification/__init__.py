"""The ``image_classification`` kind: ImageFolder data, classification heads on image backbones."""
from .data import ImageClassificationData, load_splits  # noqa: F401
from .kind import ImageClassification  # noqa: F401
