"""Model merging of trained runs: weight soups and task-vector arithmetic (``methods``), LoRA runs
through peft (``lora``), and ``mmsft merge`` (``run``).  Nothing is imported here, so the tensor
methods can be used without loading the pipeline."""
