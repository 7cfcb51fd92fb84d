"""DDP on CPU: 2 gloo processes (torchrun environment) == 1 process with the same global batch.

    .venv/bin/pytest tests/test_distributed.py -q
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_finetune import assert_same_training, cfg  # noqa: E402

from wiseft_lib.core.features import extract_features  # noqa: E402
from wiseft_lib.finetune import finetune  # noqa: E402

from helpers import AugmentedSet, gloo_ranks, threads, tiny_classifier  # noqa: E402

WORKER = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, {testdir!r})
    from safetensors.torch import save_file
    from helpers import AugmentedSet, tiny_classifier
    from test_finetune import cfg
    from wiseft_lib.core.device import dist_info
    from wiseft_lib.core.features import extract_features
    from wiseft_lib.finetune import finetune, cleanup_distributed
    out = {out!r}
    finetune(tiny_classifier(), AugmentedSet(), cfg(epochs=2), output_dir=out + "/e2e", progress=False)
    finetune(tiny_classifier(), AugmentedSet(), cfg(mode="linear", lr=1e-2), output_dir=out + "/lc",
             progress=False, cache_dir=out + "/cache", feature_set=AugmentedSet(augment=False))
    feats, labels = extract_features(tiny_classifier().image_encoder, AugmentedSet(n=41, augment=False),
                                     batch_size=4, progress=False)
    if dist_info()[0] == 0:
        save_file({{"feats": feats, "labels": labels}}, out + "/feats.safetensors")
    cleanup_distributed()
""")


@pytest.mark.slow
def test_two_process_gloo_ddp_matches_one_process(tmp_path):
    """Two ranks started with torchrun's environment (RANK, WORLD_SIZE, MASTER_*; the plain
    launcher saves a third interpreter start on a busy CPU); the 1-process references run
    here while they work."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(testdir=str(Path(__file__).parent), out=str(tmp_path)))
    with gloo_ranks(script), threads(1):
        # meanwhile, the 1-process references (global batch 8 = 2 ranks x 4), one thread like each rank
        one = finetune(tiny_classifier(), AugmentedSet(), cfg(epochs=2), progress=False)
        one_lc = finetune(tiny_classifier(), AugmentedSet(), cfg(mode="linear", lr=1e-2), progress=False,
                          feature_set=AugmentedSet(augment=False))
        feats, labels = extract_features(tiny_classifier().image_encoder, AugmentedSet(n=41, augment=False),
                                         batch_size=4, progress=False)

    def load(path: Path):
        m = tiny_classifier()
        m.load_state_dict(load_file(str(path)))
        return m.eval()

    assert_same_training(one, load(tmp_path / "e2e" / "finetuned.safetensors"), atol=1e-6)
    # linear classifier on (all-gathered) cached features
    assert_same_training(one_lc, load(tmp_path / "lc" / "finetuned.safetensors"), atol=1e-6)
    # distributed feature extraction: strided shards gathered back in dataset order (41 = odd size)
    got = load_file(str(tmp_path / "feats.safetensors"))
    torch.testing.assert_close(got["feats"], feats, atol=1e-6, rtol=0)
    assert torch.equal(got["labels"], labels)


EVAL_WORKER = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, {testdir!r})
    from safetensors.torch import save_file
    from helpers import AugmentedSet, tiny_classifier
    from test_sweep import endpoints
    from wiseft_lib.core.device import cleanup_distributed, dist_info, setup_distributed, is_distributed
    from wiseft_lib.core.evaluate import evaluate, predict_logits
    from wiseft_lib.core.features import extract_features
    from wiseft_lib.core.sweep import sweep_logits
    setup_distributed()
    assert is_distributed()
    out = {{}}
    for n in (41, 1):
        data = AugmentedSet(n=n, augment=False)
        logits, labels = predict_logits(tiny_classifier(), data, batch_size=4, progress=False)
        theta_0, theta_1, work = endpoints()
        swept = sweep_logits(work, theta_0, theta_1, [0.0, 0.5, 1.0], data, batch_size=4, chunk_images=8,
                             progress=False)
        feats, flabels = extract_features(tiny_classifier().image_encoder, data, batch_size=4, progress=False)
        out.update({{f"logits{{n}}": logits, f"labels{{n}}": labels, f"feats{{n}}": feats, f"flabels{{n}}": flabels,
                    **{{f"sweep{{n}}_{{a}}": v[0] for a, v in swept.items()}}}})
    if dist_info()[0] == 0:
        save_file(out, {out_file!r})
    cleanup_distributed()
""")


@pytest.mark.slow
def test_two_process_evaluation_sweep_and_features_equal_one_process_exactly(tmp_path):
    """Each rank scores a contiguous share (41 rows: 20 + 21; 1 row: 0 + 1); the gathered logits, sweep and
    features are one process's: every row scored exactly once, in dataset order, none padded, none lost.

    Exact: keys, shapes, dtypes and labels. The floats are compared to a tolerance: the
    reference runs with one thread and the same batches of 4 as the ranks (the shares split on a batch
    boundary), but the ranks are other processes (own start-up, OMP_NUM_THREADS=1 from the environment, gloo),
    so their last bits are not part of the claim."""
    script = tmp_path / "eval_worker.py"
    out_file = tmp_path / "eval.safetensors"
    script.write_text(EVAL_WORKER.format(testdir=str(Path(__file__).parent), out_file=str(out_file)))
    with gloo_ranks(script), threads(1):  # the reference: one thread, like each rank
        from test_sweep import endpoints

        from wiseft_lib.core.evaluate import predict_logits
        from wiseft_lib.core.sweep import sweep_logits

        expected = {}
        for n in (41, 1):
            data = AugmentedSet(n=n, augment=False)
            expected[f"logits{n}"], expected[f"labels{n}"] = predict_logits(tiny_classifier(), data, batch_size=4,
                                                                            progress=False)
            theta_0, theta_1, work = endpoints()
            swept = sweep_logits(work, theta_0, theta_1, [0.0, 0.5, 1.0], data, batch_size=4, progress=False)
            expected.update({f"sweep{n}_{a}": v[0] for a, v in swept.items()})
            expected[f"feats{n}"], expected[f"flabels{n}"] = extract_features(
                tiny_classifier().image_encoder, data, batch_size=4, progress=False)
    got = load_file(str(out_file))
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key].shape == value.shape and got[key].dtype == value.dtype, key  # no padded row, none lost
        if "labels" in key:  # integers: exact, and in dataset order
            assert torch.equal(got[key], value), key
            continue
        # float rows from other processes: equal up to float rounding (fp32 epsilon ~1.2e-7, plus a margin for
        # summation order), far below the distance between two different rows (a shifted or lost row fails)
        torch.testing.assert_close(got[key], value, rtol=1e-5, atol=1e-6, msg=lambda m, key=key: f"{key}: {m}")
