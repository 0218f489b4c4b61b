"""Run several `rgsyn` stage commands one after another in every process of a launcher:

    accelerate launch --multi_gpu --num_processes 2 tests/multiprocess_stages.py "rl ..." "train ..."

tests/test_multiprocess.py uses it so that one launch (one process start-up, the slow part on a
CPU) covers a downstream, an RL and a generate stage. Each argument is one stage's command line
without the leading `rgsyn`; the first that fails stops the run with its exit status.
"""
import shlex
import sys

from rgsyn.cli import main

for command in sys.argv[1:]:
    rc = main(shlex.split(command))
    if rc:
        sys.exit(rc)
