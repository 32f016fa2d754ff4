"""mmsft: multimodal supervised fine-tuning and domain adaptation (``mmsft --help``; README.md)."""
