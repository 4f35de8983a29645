"""The training and evaluation pipelines behind the ``Classifier`` facade.

train.py     index -> split -> decode -> (lr-find) -> phases -> artifact
loaders.py   what each phase trains on: cached frozen-base features or decoded images
evaluate.py  a trained artifact scored on a folder, a CSV or the run's own split
scoring.py   metrics of a decoded split from a predictor
outputs.py   what a run folder holds (config.json, split.csv, metrics.json, figures)
"""
