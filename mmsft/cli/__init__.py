"""``mmsft`` command line: one module per command group, each registered in ``COMMANDS``."""
