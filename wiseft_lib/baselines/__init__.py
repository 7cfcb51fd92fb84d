"""The paper's other baselines: output-space ensembles, head baselines, other models, CoOp."""
