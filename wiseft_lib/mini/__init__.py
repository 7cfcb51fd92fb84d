"""The embedded miniature's models: the mini CLIP and its pretraining, the standard (non-CLIP) models,
and the shipped weights (``weights/``) and model configs (``assets/``)."""
