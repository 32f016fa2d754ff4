"""evaluate.Metric scripts, loaded by path via mmsft.metrics.load (evaluate copies each one into its
cache, so they are not imported as package modules and share code only through the absolute import
``mmsft.metrics.bases``); macro_average serves f1/precision/recall_macro through ``config_name``."""
