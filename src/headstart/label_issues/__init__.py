"""Label issues: the images whose given label is probably wrong, from out-of-fold
predictions of heads trained on k folds of the frozen-base features (confident learning).

    headstart doctor DATA --labels        -> label_issues.csv / .json, a doctor.html section
    headstart train DATA                  -> RUN/label_issues.csv, "possible label issues"
    headstart train DATA --exclude label_issues.csv     trains without the marked files
"""

from headstart.label_issues.exclude import apply_exclude
from headstart.label_issues.find import (
    CSV_NAME,
    JSON_NAME,
    LabelSearch,
    find_in_data,
    find_issues,
    for_run,
    print_top,
    write_outputs,
)
from headstart.label_issues.table import (
    LabelIssue,
    LabelIssues,
    Neighbour,
    excluded_paths,
    read_csv,
    to_csv,
)

__all__ = [
    "CSV_NAME",
    "JSON_NAME",
    "LabelIssue",
    "LabelIssues",
    "LabelSearch",
    "Neighbour",
    "apply_exclude",
    "excluded_paths",
    "find_in_data",
    "find_issues",
    "for_run",
    "print_top",
    "read_csv",
    "to_csv",
    "write_outputs",
]
