"""Run reports: Markdown with training curves and kind-specific sections."""
