"""``python -m wiseft_lib.finetune`` and ``torchrun -m wiseft_lib.finetune``."""
from wiseft_lib.finetune.cli import main

raise SystemExit(main())
