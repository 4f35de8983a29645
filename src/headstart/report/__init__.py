"""The HTML report written after every ``train`` and ``evaluate``."""

from headstart.report.build import REPORT, render, write_report, write_report_safely
from headstart.report.inputs import ReportInputs

__all__ = ["REPORT", "ReportInputs", "render", "write_report", "write_report_safely"]
