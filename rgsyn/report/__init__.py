"""The report: every table of the paper next to the suite's numbers, verdicts on the published
claims, figures and a self-contained HTML page.

    stage.py    `rgsyn report`: build everything, log it to MLflow (run, build_report)
    tables.py   the paper's tables from benchmarks/*/metrics.json and paper.yaml
    figures.py  seaborn figures          html.py   the self-contained report.html
    timing.py   stage wall times from MLflow
"""
from rgsyn.report.stage import build_report, run

__all__ = ["build_report", "run"]
