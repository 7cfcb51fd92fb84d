"""The method's core: models, zero-shot heads, weight interpolation, evaluation, features, probes."""
