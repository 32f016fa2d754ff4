"""The ``generation`` kind (translation, dialogue replies): conversation data, the ``lm`` head,
decoding-based evaluation, data-check bindings."""
from .data import GenData, GenerationData, GenerateSpec, build_splits, parse_input  # noqa: F401
from .kind import Generation  # noqa: F401
from .readers import GEN_READERS, LANGUAGES, read_split  # noqa: F401
