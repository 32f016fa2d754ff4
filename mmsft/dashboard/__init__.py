"""The run dashboard (``mmsft runs list|compare|serve``): reads run folders as written, standard library only,
so it runs beside a training job without loading a model."""
from .data import list_runs, read_run

__all__ = ["list_runs", "read_run"]
