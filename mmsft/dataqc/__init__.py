"""Data quality checks for any registered task: duplicates and leakage, conflicting labels,
label-noise suspects, lengths, class balance, diversity, a verdict list, and a cleaned copy.

    from mmsft.dataqc import check_task
    out_dir, results = check_task(build_run_config("sst2_sentiment"))   # runs/data-check-sst2_sentiment/

Checks work on a raw view of the data (``views.build_view``): rows as the task reads them, before
its own dedupe, each tagged with the split the task's configured cleaning and splitting gives it.
"""
from .check import SECTIONS, check_task, run_checks, write_report  # noqa: F401
from .views import Item, QCData, build_view  # noqa: F401
