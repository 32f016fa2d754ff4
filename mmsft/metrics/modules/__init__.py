"""evaluate.Metric scripts, one per metric; loaded by path via mmsft.metrics.load, not imported."""
