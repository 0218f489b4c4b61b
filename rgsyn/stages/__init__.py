"""One module per `rgsyn <command>`: the stage code of `rgsyn X` lives in `rgsyn/stages/X.py`.

The stages sit on top of the library (data, generator, rl, downstream, metrics, report, ...): a stage
imports the library, the library never imports a stage.
"""
