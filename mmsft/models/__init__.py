"""Task models: a shared backbone plus separate heads; heads and poolings are registries."""
from .base import TaskModel  # noqa: F401
from .heads import HEADS, POOLERS  # noqa: F401
