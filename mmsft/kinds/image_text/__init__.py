"""Image + text kinds on COCO-style captions: ``image_text_retrieval`` (a matching head, contrastive)
and ``image_multilabel`` (object categories from the image, its caption, or both, fused)."""
from .data import ImageTextData, load_splits  # noqa: F401
from .multilabel import ImageMultilabel  # noqa: F401
from .retrieval import ImageTextRetrieval  # noqa: F401
