"""The data doctor: find what is wrong with a data set before training on it (read-only)."""

from headstart.doctor.findings import Finding, quick_checks
from headstart.doctor.run import Diagnosis, diagnose, print_summary, write_outputs

__all__ = ["Diagnosis", "Finding", "diagnose", "print_summary", "quick_checks", "write_outputs"]
