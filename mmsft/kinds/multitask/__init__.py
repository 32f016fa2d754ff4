"""The ``multitask`` kind: member tasks trained together on one backbone, one head per task."""
from .kind import MultiTask, MultiTaskData  # noqa: F401
