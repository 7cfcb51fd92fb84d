"""Datasets: one registry for the paper's datasets and the embedded mini shifts."""
from wiseft_lib.data.registry import (
    DatasetBundle,
    describe_dataset,
    get_dataset,
    list_datasets,
    register_dataset,
)

__all__ = ["DatasetBundle", "describe_dataset", "get_dataset", "list_datasets", "register_dataset"]
