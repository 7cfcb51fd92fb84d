"""Every performance ratio of wiseft_lib, each measured side by side in this one run (``make bench``).

    .venv/bin/python bench/run_all.py                 # CPU, about 3-6 minutes on a busy 2-core machine
    .venv/bin/python bench/run_all.py --quick         # small sizes, 2 rounds (the test runs this)
    .venv/bin/python bench/run_all.py --device cuda   # on a GPU (wall time instead of CPU time)
    make bench BENCH_ARGS="--rounds 7"
    .venv/bin/python bench/run_all.py --only sweep,eval  # a subset (names: see --help)

Output (stdout): a few lines on the machine, device and sizes; then one line per ratio,
``ratio_<name>: <value> (target <op> <bound>)`` or ``... (info)``, followed by ``--`` and how it
was measured; the last line is ``all targets met: yes`` or ``all targets met: no (missed: a, b)``.
Progress goes to stderr. Exit status 0 when every benchmark ran (whether or not targets were met),
1 when one failed (its lines then read ``nan`` and count as missed).

Method (as ``bench/finetune_step.py``): each ratio is the median, over ``--rounds`` back-to-back
pairs (order alternating), of the pair's time ratio, so a burst of load from other jobs hits both
halves of a pair. On the CPU the clock is this process's CPU time with one thread (other jobs on a
shared machine disturb it far less than wall time); everything timed that way runs in this process
(DataLoader ``num_workers=0``). The two-process evaluation runs in subprocesses, so it uses wall time
and says so. On GPUs every clock is wall time (with synchronisation).

1. ``ratio_sweep_vs_decode_plus_forwards`` (<= 1.10): ``sweep_logits`` over n alphas on a dataset of
   JPEG files decoded per item (PIL + open_clip's eval transform) vs its lower bound: one decode pass
   + n bare forward passes over the decoded tensors. ``speedup_sweep_vs_naive`` (info): the naive
   sweep (per alpha: ``interpolate_in_place`` + ``predict_logits``, so n decodes) / the sweep.
2. ``ratio_eval_vs_bare_loop`` (<= 1.05): ``predict_logits`` vs a bare inference loop over the same
   DataLoader, on pre-decoded tensors.
3. ``speedup_two_process_eval`` (info; gated on identical per-class counts): ``predict_logits`` in
   2 gloo processes (torchrun environment) vs 1 process with 1 thread, wall time.
4. ``ratio_feature_cache_hit_speedup`` (>= 20): ``extract_features`` cold (extraction + cache write,
   fresh cache dir) / warm (a cache hit).
5. ``ratio_interp_peak_memory`` (<= 1.0): peak extra memory of ``interpolate_in_place`` (one alpha,
   and an ``iter_alphas`` loop) / the model's parameter+buffer bytes; ``ratio_interp_weights_peak_memory``
   (info): the same for the allocating ``interpolate_weights`` (about 1: shows the method sees
   allocations); ``ratio_interp_time_vs_state_dict_copy`` (info).
6. ``ratio_engine_vs_bare`` (<= 1.05) and ``ratio_lc_sweep_vs_one_pass`` (<= 1.2): ``bench/finetune_step.py``.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import bench_common as bc
import finetune_step
import torch
from torch.utils.data import DataLoader, Subset

HERE = Path(__file__).resolve().parent
WORKER = HERE / "bench_worker.py"

VIT = dict(width=128, layers=4, image=48, patch=6)  # forward of one image ~3x its JPEG decode (64 px, 1 thread)
SIZES = {
    "default": dict(
        vit=VIT, rounds=5,
        # short halves, more pairs: load from other jobs drifts less within a pair
        sweep=dict(n=256, jpeg_px=64, n_alphas=11, batch=64, chunk=128, rounds=9),
        eval=dict(n=1024, batch=128),
        two_process=dict(n=1025, batch=64, reps=3),  # 1025 = 512 + 513: each share splits on a batch boundary
        features=dict(n=1024, batch=128, hits=5),
        interp=dict(vit=dict(width=512, layers=5, image=32, patch=8), n_alphas=11),  # ~63 MB of fp32 weights
        # bench/finetune_step.py's main() defaults (its rounds: 8)
        finetune=dict(width=128, layers=2, image_size=32, patch=8, batch=32, steps=20, eval_n=1024,
                      eval_batch=256, rounds=8),
    ),
    "quick": dict(
        vit=VIT, rounds=2,
        sweep=dict(n=128, jpeg_px=64, n_alphas=11, batch=32, chunk=64),
        eval=dict(n=256, batch=64),
        two_process=dict(n=257, batch=32, reps=2),
        features=dict(n=256, batch=64, hits=5),
        interp=dict(vit=dict(width=256, layers=4, image=32, patch=8), n_alphas=11),
        finetune=dict(width=128, layers=2, image_size=32, patch=8, batch=32, steps=8, eval_n=256,
                      eval_batch=128, rounds=2),
    ),
}


@dataclass
class Ratio:
    name: str
    value: float
    op: Optional[str] = None  # "<=" / ">=", None: info only
    bound: Optional[str] = None
    desc: str = ""
    gate: bool = True  # False: missed regardless of the value (e.g. counts differ)

    def met(self) -> bool:
        if not self.gate or math.isnan(self.value):
            return False
        if self.op is None:
            return True
        b = float(self.bound)
        return self.value <= b if self.op == "<=" else self.value >= b

    def line(self) -> str:
        target = f"target {self.op} {self.bound}" if self.op else "info"
        return f"{self.name}: {self.value:.3f} ({target})" + (f"  -- {self.desc}" if self.desc else "")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def clock_name(dev: torch.device) -> str:
    return "CPU time" if dev.type == "cpu" else "wall time"


def fast(times, dev) -> float:
    """The fastest round on the ratios' clock, in seconds."""
    return bc.clock(bc.fastest(times, dev), dev)


def spread(ta, tb, dev) -> str:
    """The range of the per-pair ratios (how noisy the median's inputs were)."""
    r = sorted(bc.clock(a, dev) / bc.clock(b, dev) for a, b in zip(ta, tb))
    return f"median of {len(r)} pairs, range {r[0]:.3f}-{r[-1]:.3f}"


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def eval_precision(dev: torch.device) -> str:
    """What ``predict_logits`` / ``sweep_logits`` use with precision 'auto': bf16 autocast on GPUs, fp32 on the CPU."""
    return "bf16" if dev.type == "cuda" else "fp32"


# ---------------------------------------------------------------- 1. the end-to-end sweep
def bench_sweep(S: dict, dev: torch.device, rounds: int, tmp: Path) -> list[Ratio]:
    from wiseft_lib.core.device import autocast_context
    from wiseft_lib.core.evaluate import predict_logits
    from wiseft_lib.core.interpolate import interpolate_in_place
    from wiseft_lib.core.sweep import sweep_logits

    s, vit = S["sweep"], S["vit"]
    files, labels = bc.write_jpegs(tmp / "jpeg", s["n"], s["jpeg_px"])
    data = bc.JpegFolder(files, labels, vit["image"])
    zs, ft = bc.build_vit(vit).to(dev), bc.build_vit(vit, seed=1).to(dev)
    theta_0, theta_1 = bc.clone_state(zs), bc.clone_state(ft)
    work, ref = copy.deepcopy(zs), copy.deepcopy(zs).eval()
    alphas = [i / (s["n_alphas"] - 1) for i in range(s["n_alphas"])]
    prec, B = eval_precision(dev), s["batch"]
    got = {}

    def sweep(ds=data) -> None:
        got["sweep"] = sweep_logits(work, theta_0, theta_1, alphas, ds, batch_size=B, chunk_images=s["chunk"],
                                    device=dev, progress=False)

    def decode(ds=data) -> list[torch.Tensor]:
        return [x.to(dev) for x, _ in DataLoader(ds, batch_size=B)]

    def forwards(xs: list[torch.Tensor], n_passes: int) -> None:
        with torch.inference_mode(), autocast_context(prec, dev):
            for _ in range(n_passes):
                for x in xs:
                    ref(x)
        sync(dev)

    def lower_bound(ds=data) -> None:
        forwards(decode(ds), len(alphas))

    def naive() -> None:
        out = {}
        for a in alphas:
            interpolate_in_place(work, theta_0, theta_1, a)
            out[a] = predict_logits(work, data, batch_size=B, progress=False)
        got["naive"] = out

    warm = Subset(data, range(min(len(data), 2 * B)))
    sweep(warm), lower_bound(warm)  # warm-up (allocator, kernels)
    t_dec = bc.timed(lambda: got.__setitem__("xs", decode()))
    t_fwd = bc.timed(lambda: forwards(got["xs"], 1))
    del got["xs"]
    log(f"sweep: decode pass {bc.clock(t_dec, dev):.2f} s, one forward pass {bc.clock(t_fwd, dev):.2f} s; "
        f"{rounds} pairs of ~{bc.clock(t_dec, dev) + len(alphas) * bc.clock(t_fwd, dev):.1f} s each")
    ts, tl, ratio = bc.paired(sweep, lower_bound, rounds, dev)
    t_naive = bc.timed(naive)
    same = all(torch.equal(got["sweep"][a][i], got["naive"][a][i]) for a in alphas for i in (0, 1))
    diff = max((got["sweep"][a][0] - got["naive"][a][0]).abs().max().item() for a in alphas)
    c = clock_name(dev)
    sweep_med = bc.median([bc.clock(t, dev) for t in ts])
    return [
        Ratio("ratio_sweep_vs_decode_plus_forwards", ratio, "<=", "1.10",
              f"{c}: sweep_logits over {len(alphas)} alphas, {len(data)} JPEGs (batch {B}, chunk {s['chunk']}): "
              f"{fast(ts, dev):.2f} s vs 1 decode pass + {len(alphas)} bare forward passes: {fast(tl, dev):.2f} s "
              f"(decode {bc.clock(t_dec, dev):.2f} s, one forward pass {bc.clock(t_fwd, dev):.2f} s); "
              f"{spread(ts, tl, dev)}"),
        Ratio("speedup_sweep_vs_naive", bc.clock(t_naive, dev) / sweep_med, None, None,
              f"{c}: naive sweep ({len(alphas)} x (interpolate_in_place + predict_logits), {len(alphas)} decodes) "
              f"{bc.clock(t_naive, dev):.2f} s, measured once / the sweep's median {sweep_med:.2f} s; "
              f"logits identical to the naive sweep: {'yes' if same else f'no (max |diff| {diff:.2e})'}"),
    ]


# ---------------------------------------------------------------- 2. evaluation vs a bare loop
def bench_eval(S: dict, dev: torch.device, rounds: int, tmp: Path) -> list[Ratio]:
    from wiseft_lib.core.device import autocast_context
    from wiseft_lib.core.evaluate import predict_logits

    e, vit = S["eval"], S["vit"]
    model = bc.build_vit(vit).to(dev).eval()
    data = bc.tensor_dataset(e["n"], vit["image"])
    prec, B = eval_precision(dev), e["batch"]
    got = {}

    def library() -> None:
        got["lib"] = predict_logits(model, data, batch_size=B, progress=False)

    def bare() -> None:
        outs, ys = [], []
        with torch.inference_mode(), autocast_context(prec, dev):
            for x, y in DataLoader(data, batch_size=B):
                outs.append(model(x.to(dev)).float().cpu())
                ys.append(y)
        got["bare"] = (torch.cat(outs), torch.cat(ys))

    library(), bare()  # warm-up
    tl, tb, ratio = bc.paired(library, bare, rounds, dev)
    same = torch.equal(got["lib"][0], got["bare"][0])
    return [Ratio("ratio_eval_vs_bare_loop", ratio, "<=", "1.05",
                  f"{clock_name(dev)}: predict_logits {fast(tl, dev):.3f} s vs bare inference loop over the same "
                  f"DataLoader {fast(tb, dev):.3f} s ({len(data)} pre-decoded images, batch {B}); "
                  f"logits identical: {'yes' if same else 'no'}; {spread(tl, tb, dev)}")]


# ---------------------------------------------------------------- 3. two processes (gloo) vs one
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_two_process(S: dict, dev: torch.device, rounds: int, tmp: Path) -> list[Ratio]:
    from wiseft_lib.core.evaluate import predict_logits

    p, vit = S["two_process"], S["vit"]
    cfg = {"vit": vit, "n": p["n"], "batch": p["batch"], "reps": p["reps"], "seed": 3}
    out = tmp / "two_process.json"
    base = bc.worker_env(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE="2",
                         LOCAL_WORLD_SIZE="2")
    procs = [subprocess.Popen([sys.executable, str(WORKER), "eval", json.dumps(cfg), str(out)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env={**base, "RANK": str(r), "LOCAL_RANK": str(r)}) for r in range(2)]
    try:
        logs = [pr.communicate(timeout=600)[0].decode(errors="replace") for pr in procs]
    finally:
        for pr in procs:
            if pr.poll() is None:
                pr.kill()
    for pr, text in zip(procs, logs):
        if pr.returncode != 0:
            raise RuntimeError(f"a rank of the 2-process evaluation exited {pr.returncode}:\n{text[-3000:]}")
    two = json.loads(out.read_text())
    two_logits = torch.load(str(out) + ".logits.pt")

    # the reference: this process, 1 thread, the same model, data, batch size and passes (warm-up + reps)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = bc.build_vit(vit)
        data = bc.tensor_dataset(p["n"], vit["image"], seed=cfg["seed"])
        one_times = []
        for r in range(p["reps"] + 1):
            t = time.perf_counter()
            logits, labels = predict_logits(model, data, batch_size=p["batch"], progress=False)
            if r:
                one_times.append(time.perf_counter() - t)
    finally:
        torch.set_num_threads(threads)
    counts = bc.per_class_counts(logits, labels)
    same = counts == two["counts"]
    diff = (logits - two_logits).abs().max().item()
    t1, t2 = bc.median(one_times), bc.median(two["times"])
    return [Ratio("speedup_two_process_eval", t1 / t2, None, None,
                  f"wall time (subprocesses: CPU time cannot compare them): predict_logits on {p['n']} images, "
                  f"batch {p['batch']}, CPU: 1 process x 1 thread {t1:.2f} s, 2 gloo processes x 1 thread "
                  f"{t2:.2f} s (evaluation only, after setup; median of {p['reps']} passes); "
                  f"counts identical: {'yes' if same else 'no'} (correct per class {counts['correct']} of "
                  f"{counts['n']}; logits max |diff| {diff:.1e})",
                  gate=same)]


# ---------------------------------------------------------------- 4. feature cache: miss vs hit
def bench_features(S: dict, dev: torch.device, rounds: int, tmp: Path) -> list[Ratio]:
    from wiseft_lib.core.features import CACHE_STATS, extract_features

    f, vit = S["features"], S["vit"]
    enc = bc.build_vit(vit).image_encoder.to(dev).eval()
    data = bc.tensor_dataset(f["n"], vit["image"])
    warm_dir, cold_root = tmp / "features-warm", tmp / "features-cold"
    cold_root.mkdir(parents=True, exist_ok=True)
    k = f["hits"]

    def call(cache_dir) -> None:
        extract_features(enc, data, cache_dir=cache_dir, cache_key_parts={"dataset": "bench"}, batch_size=f["batch"],
                         device=dev, precision="fp32", progress=False)

    def cold() -> None:  # a fresh cache dir: a miss (extraction + write)
        call(tempfile.mkdtemp(dir=cold_root))

    def warm() -> None:  # k hits (one is too short to time well)
        for _ in range(k):
            call(warm_dir)

    cold(), call(warm_dir), warm()  # warm-up; the warm dir now holds the file
    before = (CACHE_STATS.hits, CACHE_STATS.misses)
    tc, tw, ratio = bc.paired(cold, warm, rounds, dev)
    hits, misses = CACHE_STATS.hits - before[0], CACHE_STATS.misses - before[1]
    shutil.rmtree(cold_root, ignore_errors=True)
    if (hits, misses) != (rounds * k, rounds):
        raise RuntimeError(f"expected {rounds * k} hits and {rounds} misses, got {hits} and {misses}")
    return [Ratio("ratio_feature_cache_hit_speedup", ratio * k, ">=", "20",
                  f"{clock_name(dev)}: extract_features miss (extraction + cache write, fresh dir) "
                  f"{fast(tc, dev):.3f} s vs hit {fast(tw, dev) / k * 1e3:.1f} ms ({f['n']} images, batch "
                  f"{f['batch']}, {bc.model_bytes(enc) / 1e6:.1f} MB encoder; hit = the public call, timed over {k} "
                  f"calls); {spread(tc, [(w / k, c / k) for w, c in tw], dev)}")]


# ---------------------------------------------------------------- 5. interpolation: memory and time
def bench_interp(S: dict, dev: torch.device, rounds: int, tmp: Path) -> list[Ratio]:
    i = S["interp"]
    cfg = {"vit": i["vit"], "n_alphas": i["n_alphas"], "rounds": rounds}
    if dev.type == "cuda":
        r = _interp_cuda(cfg, dev)
        how = "torch.cuda.max_memory_allocated above memory_allocated before"
    else:
        out = tmp / "interp.json"
        env = bc.worker_env(MALLOC_MMAP_THRESHOLD_="65536")
        proc = subprocess.run([sys.executable, str(WORKER), "interp-mem", json.dumps(cfg), str(out)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"the interpolation worker exited {proc.returncode}:\n"
                               f"{proc.stdout.decode(errors='replace')[-3000:]}")
        r = json.loads(out.read_text())
        how = ("peak RSS of a subprocess (VmHWM reset via /proc/self/clear_refs" if r["exact_hwm"]
               else "peak RSS of a subprocess (VmRSS sampled every 0.5 ms") + \
              " above VmRSS before; glibc mmap threshold 64 KiB + malloc_trim so allocations show)"
    nb = r["model_bytes"]
    m = r["mem"]
    in_place = max(m["in_place"], m["iter_alphas"])
    return [
        Ratio("ratio_interp_peak_memory", in_place / nb, "<=", "1.0",
              f"{how}: interpolate_in_place (one alpha) {m['in_place'] / 1e6:.1f} MB, iter_alphas over "
              f"{i['n_alphas']} alphas {m['iter_alphas'] / 1e6:.1f} MB extra, / {nb / 1e6:.1f} MB of weights"),
        Ratio("ratio_interp_weights_peak_memory", m["interpolate_weights"] / nb, None, None,
              f"same method on interpolate_weights (returns a new state dict: ~1 expected, a check the method "
              f"sees allocations): {m['interpolate_weights'] / 1e6:.1f} MB extra"),
        Ratio("ratio_interp_time_vs_state_dict_copy", r["time_ratio"], None, None,
              f"{'CPU time (in the subprocess)' if dev.type == 'cpu' else 'wall time'}: interpolate_in_place "
              f"{r['interp_s_per_alpha'] * 1e3:.1f} ms per alpha vs one {{k: v.clone()}} copy "
              f"{r['copy_s'] * 1e3:.1f} ms ({nb / 1e6:.1f} MB; {i['n_alphas']} alphas vs {i['n_alphas']} copies "
              f"per round); median of {rounds} pairs, range {min(r['pairs']):.3f}-{max(r['pairs']):.3f}"),
    ]


def _interp_cuda(cfg: dict, dev: torch.device) -> dict:
    from wiseft_lib.core.interpolate import interpolate_in_place, interpolate_weights, iter_alphas

    model = bc.build_vit(cfg["vit"]).to(dev)
    nb = bc.model_bytes(model)
    theta_0, theta_1 = bc.clone_state(model), bc.clone_state(model)
    with torch.no_grad():
        for t in theta_1.values():
            if t.is_floating_point():
                t.add_(torch.randn_like(t), alpha=0.02)
    alphas = [i / (cfg["n_alphas"] - 1) for i in range(cfg["n_alphas"])]

    def peak(fn) -> float:
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        fn()
        torch.cuda.synchronize()
        return float(torch.cuda.max_memory_allocated(dev) - base)

    def loop():
        for _ in iter_alphas(model, theta_0, theta_1, alphas, progress=False):
            pass

    def interp_all():
        for a in alphas:
            interpolate_in_place(model, theta_0, theta_1, a)

    def copies():
        for _ in alphas:
            sd = {k: v.clone() for k, v in theta_0.items()}
            del sd

    mem = {"in_place": peak(lambda: interpolate_in_place(model, theta_0, theta_1, 0.37)),
           "iter_alphas": peak(loop),
           "interpolate_weights": peak(lambda: interpolate_weights(theta_0, theta_1, 0.37))}
    interp_all(), copies()
    ti, tc, ratio = bc.paired(interp_all, copies, cfg["rounds"], dev)
    return {"model_bytes": nb, "mem": mem, "time_ratio": ratio, "pairs": [a[0] / b[0] for a, b in zip(ti, tc)],
            "interp_s_per_alpha": fast(ti, dev) / len(alphas), "copy_s": fast(tc, dev) / len(alphas)}


# ---------------------------------------------------------------- 6. bench/finetune_step.py
def finetune_args(S: dict, dev: torch.device, rounds: int) -> argparse.Namespace:
    """The Namespace ``finetune_step.bench_engine`` / ``bench_lc_sweep`` read (``main()``'s defaults: ``SIZES``)."""
    ft = {k: v for k, v in S["finetune"].items() if k != "rounds"}
    return argparse.Namespace(device=str(dev), threads=torch.get_num_threads(), rounds=rounds, **ft)


def bench_finetune(S: dict, dev: torch.device, rounds: int, tmp: Path) -> list[Ratio]:
    a = finetune_args(S, dev, rounds)
    te, tb, x = finetune_step.bench_engine(a, dev)
    ts, t1, t11, y = finetune_step.bench_lc_sweep(a, dev)
    c = clock_name(dev)
    return [
        Ratio("ratio_engine_vs_bare", x, "<=", "1.05",
              f"{c}: finetune() {bc.clock(te, dev) / a.steps * 1e3:.1f} ms/step vs bare PyTorch loop "
              f"{bc.clock(tb, dev) / a.steps * 1e3:.1f} ms/step ({a.steps} steps, batch {a.batch}; fastest rounds); "
              f"median of {a.rounds} pairs (bench/finetune_step.py)"),
        Ratio("ratio_lc_sweep_vs_one_pass", y, "<=", "1.2",
              f"{c}: LC sweep of 11 alphas from 1 cached feature pass {bc.clock(ts, dev):.3f} s vs one eval pass "
              f"{bc.clock(t1, dev):.3f} s ({a.eval_n} images; from scratch: {bc.clock(t11, dev):.2f} s); "
              f"median of {a.rounds} pairs (bench/finetune_step.py)"),
    ]


# (name for --only, its key in SIZES, function, the lines it prints: name, op, bound)
BENCHES: list[tuple[str, str, Callable, list[tuple[str, Optional[str], Optional[str]]]]] = [
    ("sweep", "sweep", bench_sweep, [("ratio_sweep_vs_decode_plus_forwards", "<=", "1.10"),
                            ("speedup_sweep_vs_naive", None, None)]),
    ("eval", "eval", bench_eval, [("ratio_eval_vs_bare_loop", "<=", "1.05")]),
    ("two-process", "two_process", bench_two_process, [("speedup_two_process_eval", None, None)]),
    ("features", "features", bench_features, [("ratio_feature_cache_hit_speedup", ">=", "20")]),
    ("interp", "interp", bench_interp, [("ratio_interp_peak_memory", "<=", "1.0"),
                                     ("ratio_interp_weights_peak_memory", None, None),
                                     ("ratio_interp_time_vs_state_dict_copy", None, None)]),
    ("finetune_step", "finetune", bench_finetune, [("ratio_engine_vs_bare", "<=", "1.05"),
                                       ("ratio_lc_sweep_vs_one_pass", "<=", "1.2")]),
]


# ---------------------------------------------------------------- header and main
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def rounds_of(S: dict, key: str, args: argparse.Namespace) -> int:
    """--rounds, else the benchmark's own default (SIZES[key]['rounds']), else the size preset's."""
    return args.rounds or S[key].get("rounds", S["rounds"])


def header(S: dict, dev: torch.device, args: argparse.Namespace) -> list[str]:
    import open_clip

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    load = ""
    if hasattr(os, "getloadavg"):
        load = ", load average %.2f %.2f %.2f" % os.getloadavg()
    gpu = f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""
    v, sw, e, p, f, i = S["vit"], S["sweep"], S["eval"], S["two_process"], S["features"], S["interp"]
    vit_mb = bc.model_bytes(bc.build_vit(v)) / 1e6
    ft = finetune_args(S, dev, rounds_of(S, "finetune", args))
    paired_rounds = ", ".join(f"{name} {rounds_of(S, key, args)}" for name, key, fn, _ in BENCHES
                              if key != "two_process")
    return [
        f"machine: {cpu_model()}, {os.cpu_count()} logical cores ({usable} usable){load}; "
        f"{platform.system()} {platform.release()}; Python {platform.python_version()}",
        f"software: torch {torch.__version__}, open_clip {open_clip.__version__}; "
        f"torch threads {torch.get_num_threads()} "
        f"(--threads {args.threads})",
        f"device: {dev}{gpu}",
        f"sizes ({'quick' if args.quick else 'default'}): ViT for sweep/eval/2-process/features: width {v['width']}, "
        f"{v['layers']} layers, {v['image']} px, patch {v['patch']}, 10 classes ({vit_mb:.1f} MB fp32)",
        f"sizes: sweep {sw['n']} JPEGs {sw['jpeg_px']}x{sw['jpeg_px']} "
        f"(PIL decode + open_clip eval transform per item), "
        f"{sw['n_alphas']} alphas, batch {sw['batch']}, chunk_images {sw['chunk']}; eval {e['n']} pre-decoded images, "
        f"batch {e['batch']}; 2-process eval {p['n']} images, batch {p['batch']}, {p['reps']} timed passes",
        f"sizes: features {f['n']} images, batch {f['batch']}; interpolation ViT width {i['vit']['width']}, "
        f"{i['vit']['layers']} layers, {i['n_alphas']} alphas; finetune_step.py width {ft.width}, {ft.layers} layers, "
        f"{ft.image_size} px / {ft.patch}, batch {ft.batch}, {ft.steps} steps, eval {ft.eval_n} / {ft.eval_batch}",
        f"method: median of per-pair time ratios over back-to-back pairs, order alternating ({paired_rounds} pairs); "
        f"clock: "
        f"{'CPU time of this process (1 thread, DataLoader num_workers=0)' if dev.type == 'cpu' else 'wall time'} "
        f"unless a line says otherwise",
    ]


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--quick", action="store_true", help="small sizes and 2 rounds (a smoke run, under a minute or two)")
    p.add_argument("--rounds", type=int, default=None,
                   help="paired rounds for every ratio (default: 5, the sweep 9, finetune_step.py's 8; --quick: 2)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: CPU time is then stable on a busy machine)")
    p.add_argument("--only", default=None, help="comma-separated subset of: " + ", ".join(b[0] for b in BENCHES)
                   + " (the last line then covers only those)")
    args = p.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        p.error("--rounds must be at least 1")
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available")
    if args.threads:
        torch.set_num_threads(args.threads)
    S = SIZES["quick" if args.quick else "default"]
    only = set(args.only.split(",")) if args.only else None
    if only and only - {b[0] for b in BENCHES}:
        p.error(f"--only: unknown benchmark(s) {', '.join(sorted(only - {b[0] for b in BENCHES}))}")
    start = time.perf_counter()
    for line in header(S, dev, args):
        print(line, flush=True)

    results: list[Ratio] = []
    failed = False
    tmp = Path(tempfile.mkdtemp(prefix="wiseft-bench-"))
    try:
        for name, key, fn, names in BENCHES:
            if only is not None and name not in only:
                continue
            log(f"{name} ...")
            t = time.perf_counter()
            try:
                got = fn(S, dev, rounds_of(S, key, args), tmp)
            except Exception as e:  # report and go on: the other ratios still mean something
                failed = True
                traceback.print_exc()
                got = [Ratio(n, float("nan"), op, b, f"ERROR in the {name} benchmark: {type(e).__name__}: {e}")
                       for n, op, b in names]
            finally:
                if dev.type == "cpu" and args.threads:
                    torch.set_num_threads(args.threads)
            log(f"{name} done in {time.perf_counter() - t:.1f} s")
            for r in got:
                print(r.line(), flush=True)
            results.extend(got)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    missed = [r.name for r in results if not r.met()]
    log(f"total {time.perf_counter() - start:.1f} s")
    print("all targets met: yes" if not missed else f"all targets met: no (missed: {', '.join(missed)})", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
