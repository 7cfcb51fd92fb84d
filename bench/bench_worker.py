"""Subprocess workers of ``bench/run_all.py`` (not meant to be run by hand).

    python bench/bench_worker.py eval CONFIG_JSON OUT_JSON         # one rank of the 2-process evaluation
    python bench/bench_worker.py interp-mem CONFIG_JSON OUT_JSON   # peak RSS of in-place interpolation

``eval`` runs under torchrun's environment (RANK, WORLD_SIZE, MASTER_*): ``setup_distributed()``
then ``predict_logits`` (each rank scores a contiguous share; logits all-gathered), timed by wall
clock after set-up, ``reps`` times after one warm-up pass; rank 0 writes the per-class counts.

``interp-mem`` measures the peak resident memory (VmHWM, reset with /proc/self/clear_refs before
each measurement) above the resident memory before it, for ``interpolate_in_place``, a whole
``iter_alphas`` loop and, as a check that the method sees allocations, ``interpolate_weights``
(which allocates a new state dict). Run with ``MALLOC_MMAP_THRESHOLD_`` set so that large blocks
are mapped and unmapped (every allocation shows in the RSS); ``malloc_trim`` before each
measurement gives freed heap pages back. It also times, with this process's CPU time,
``interpolate_in_place`` per alpha against one state-dict copy (paired rounds).
"""
from __future__ import annotations

import gc
import json
import sys
import time

import bench_common as bc
import torch


def eval_rank(cfg: dict, out: str) -> None:
    from wiseft_lib.core.device import cleanup_distributed, setup_distributed
    from wiseft_lib.core.evaluate import predict_logits

    torch.set_num_threads(1)
    model = bc.build_vit(cfg["vit"])
    data = bc.tensor_dataset(cfg["n"], cfg["vit"]["image"], seed=cfg["seed"])
    rank, world, _ = setup_distributed(torch.device("cpu"))
    sync = torch.distributed.barrier if world > 1 else (lambda: None)
    times = []
    for r in range(cfg["reps"] + 1):  # pass 0: warm-up, not timed
        sync()
        t = time.perf_counter()
        logits, labels = predict_logits(model, data, batch_size=cfg["batch"], progress=False)
        if r:
            times.append(time.perf_counter() - t)
    if rank == 0:
        with open(out, "w") as f:
            json.dump({"world": world, "times": times, "counts": bc.per_class_counts(logits, labels),
                       "logits_sum": float(logits.double().sum())}, f)
        torch.save(logits, out + ".logits.pt")
    cleanup_distributed()


def interp_mem(cfg: dict, out: str) -> None:
    from wiseft_lib.core.interpolate import interpolate_in_place, interpolate_weights, iter_alphas

    torch.set_num_threads(1)
    model = bc.build_vit(cfg["vit"])
    nbytes = bc.model_bytes(model)
    theta_0 = bc.clone_state(model)
    theta_1 = bc.clone_state(model)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for t in theta_1.values():
            if t.is_floating_point():
                t.add_(torch.randn(t.shape, generator=g), alpha=0.02)
    alphas = [i / (cfg["n_alphas"] - 1) for i in range(cfg["n_alphas"])]
    interpolate_in_place(model, theta_0, theta_1, 0.5)  # first touch of every page, outside the measurement

    exact = bc.reset_hwm()
    sampled = {"peak": 0}

    def peak_extra(fn) -> float:
        """Peak RSS above the RSS before ``fn``, in bytes."""
        gc.collect()
        bc.malloc_trim()
        rss0 = bc.proc_status_kb("VmRSS")
        if exact:
            bc.reset_hwm()
            fn()
            return max(0, bc.proc_status_kb("VmHWM") - rss0) * 1024.0
        # no clear_refs: sample VmRSS from a thread (torch kernels release the GIL)
        import threading

        stop = threading.Event()
        sampled["peak"] = rss0

        def poll():
            while not stop.is_set():
                sampled["peak"] = max(sampled["peak"], bc.proc_status_kb("VmRSS"))
                time.sleep(0.0005)

        th = threading.Thread(target=poll)
        th.start()
        try:
            fn()
        finally:
            stop.set()
            th.join()
        return max(0, sampled["peak"] - rss0) * 1024.0

    def one_alpha():
        interpolate_in_place(model, theta_0, theta_1, 0.37)

    def loop():
        for _a, _m in iter_alphas(model, theta_0, theta_1, alphas, progress=False):
            pass

    def allocating():
        sd = interpolate_weights(theta_0, theta_1, 0.37)
        del sd

    mem = {"in_place": max(peak_extra(one_alpha) for _ in range(3)),
           "iter_alphas": max(peak_extra(loop) for _ in range(2)),
           "interpolate_weights": max(peak_extra(allocating) for _ in range(2))}

    def interp_all():
        for a in alphas:
            interpolate_in_place(model, theta_0, theta_1, a)

    def copies():
        for _ in alphas:
            sd = {k: v.clone() for k, v in theta_0.items()}
            del sd

    interp_all(), copies()  # warm-up
    ti, tc, ratio = bc.paired(interp_all, copies, cfg["rounds"], torch.device("cpu"))
    with open(out, "w") as f:
        json.dump({"model_bytes": nbytes, "exact_hwm": exact, "mem": mem, "time_ratio": ratio,
                   "pairs": [a[1] / b[1] for a, b in zip(ti, tc)],
                   "interp_s_per_alpha": min(t[1] for t in ti) / len(alphas),
                   "copy_s": min(t[1] for t in tc) / len(alphas)}, f)


if __name__ == "__main__":
    cmd, cfg_json, out_path = sys.argv[1:4]
    {"eval": eval_rank, "interp-mem": interp_mem}[cmd](json.loads(cfg_json), out_path)
