"""Data: folder and CSV indexing, splits, the decoded-image store, torch datasets."""
