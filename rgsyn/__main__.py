"""`python -m rgsyn <stage>`, the same as the `rgsyn` command; launchers use it
(`accelerate launch --multi_gpu --num_processes 8 -m rgsyn train ...`)."""
import sys

from rgsyn.cli import main

sys.exit(main())
