"""Datasets: one registry for the paper's datasets and the embedded mini shifts."""
from wiseft_lib.data.registry import (
    DatasetBundle,
    default_eval_split,
    describe_dataset,
    eval_split,
    get_dataset,
    is_embedded,
    list_datasets,
    register_dataset,
    subset_options,
)

__all__ = ["DatasetBundle", "default_eval_split", "describe_dataset", "eval_split", "get_dataset", "is_embedded",
           "list_datasets", "register_dataset", "subset_options"]

# the datasets register themselves when imported, in this order
# isort: off
from wiseft_lib.data import folder  # noqa: E402,F401  (a path is an image-folder dataset)
from wiseft_lib.data import mini  # noqa: E402,F401  (registers the mini-* datasets)
from wiseft_lib.data import imagenet, cifar, wilds, video, transfer  # noqa: E402,F401  (paper datasets)
from wiseft_lib.data.mini import tasks as _mini_tasks  # noqa: E402,F401  (the mini downstream tasks and further shifts)
from wiseft_lib.data.kshot import get_kshot_dataset, kshot_bundle, kshot_indices  # noqa: E402,F401
# isort: on
