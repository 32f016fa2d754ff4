"""The one runner and its parts: optimizer, LR schedules, losses, sampling, checkpoints."""
