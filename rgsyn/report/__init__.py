"""The report's library: every table of the paper next to the suite's numbers, verdicts on the
published claims, figures and a self-contained HTML page. `rgsyn report` (rgsyn/stages/report.py)
puts them together.

    tables.py   the paper's tables from benchmarks/*/metrics.json and paper.yaml
    verdicts.py paired comparisons across seeds and their verdicts
    inputs.py   what the report reads from MLflow and the metrics files
    figures.py  seaborn figures          html.py   the self-contained report.html
    formats.py  table cells, Markdown and LaTeX output
    generation.py  generation quality and privacy tables     oracle.py  the oracle ceiling
    timing.py   stage wall times from MLflow
"""
