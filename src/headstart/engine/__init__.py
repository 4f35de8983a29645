"""Training engine: the LightningModule, callbacks and the two-phase fit."""
