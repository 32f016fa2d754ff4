"""``python -m mmsft ...`` (what ``accelerate launch -m mmsft`` and ``torchrun -m mmsft`` run)."""
import sys

from mmsft.cli.main import main

sys.exit(main())
