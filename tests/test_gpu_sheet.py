"""The GPU run sheet's parts, checked on the CPU: the throughput benchmark in its tiny mode, the synthetic
ImageNet writer (read back by the package's loaders), and the shell scripts' syntax. ``bench/gpu.sh
--cpu-tiny`` itself is not run here (it runs a whole study)."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, timeout: int = 120) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_throughput_benchmark_prints_its_ratios_on_the_cpu(tmp_path):
    out = run("bench/gpu_throughput.py", "--device", "cpu", "--tiny", "--rounds", "1", "--steps", "4",
              "--eval-steps", "4", "--json", str(tmp_path / "numbers.json"), timeout=60)
    assert out.splitlines()[0].startswith("machine:")
    values = {}
    for key in ("train_images_per_s_engine", "train_images_per_s_bare", "ratio_train_engine_vs_bare",
                "eval_images_per_s_engine", "eval_images_per_s_bare", "ratio_eval_engine_vs_bare"):
        m = re.search(rf"^{key}: ([0-9.]+)", out, re.M)
        assert m, f"no {key} line in:\n{out}"
        values[key] = float(m.group(1))
        assert values[key] > 0
    assert re.search(r"^all targets met: (yes|no \(missed: .+\))$", out, re.M)
    for what in ("train", "eval"):  # the ratio is engine time / bare time: about bare images/s / engine images/s
        r = values[f"{what}_images_per_s_bare"] / values[f"{what}_images_per_s_engine"]
        assert 0.2 < values[f"ratio_{what}_engine_vs_bare"] / r < 5
    assert (tmp_path / "numbers.json").exists()


def test_synthetic_imagenet_is_read_by_the_loaders(tmp_path):
    from torchvision.transforms import ToTensor

    from wiseft_lib.data import get_dataset

    data = tmp_path / "data"
    out = run("bench/synthetic_imagenet.py", str(data), "--per-class", "3", "--classes", "4", "--size", "24")
    assert "synthetic images" in out
    for split in ("train", "val"):
        bundle = get_dataset("imagenet", root=str(data), split=split, transform=ToTensor())
        synthetic = [i for i, (p, _) in enumerate(bundle.dataset.samples) if Path(p).name.startswith("syn_")]
        assert len(synthetic) >= 4 * 3 and bundle.skipped == 0  # the fixture's unreadable file is removed
        x, y = bundle.dataset[synthetic[-1]]
        assert tuple(x.shape) == (3, 24, 24) and 0 <= int(y) < 1000
    for name in ("imagenet-v2", "imagenet-r", "imagenet-sketch", "imagenet-a", "objectnet"):
        assert len(get_dataset(name, root=str(data), split="test").dataset) >= 4  # 4 classes x max(1, 3 // 2)
    with pytest.raises(subprocess.CalledProcessError):  # an existing, non-empty folder is refused
        subprocess.run([sys.executable, "bench/synthetic_imagenet.py", str(data)], cwd=ROOT, check=True,
                       capture_output=True, timeout=60)


@pytest.mark.parametrize("script", ["bench/gpu.sh", "scripts/slurm_wiseft.sbatch"])
def test_shell_scripts_parse(script):
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    done = subprocess.run([bash, "-n", str(ROOT / script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
