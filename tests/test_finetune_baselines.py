"""The paper's fine-tuning baselines as engine options (Figures 3, 13): optimizers, L2 toward the zero-shot
weights, distillation toward the zero-shot model. Definitions on known values, behaviour on the tiny CLIP."""
import pytest
import torch
import torch.nn.functional as F

from wiseft_lib.core.models import ImageClassifier
from wiseft_lib.finetune import FinetuneConfig, build_finetune_parser, config_from_args, finetune
from wiseft_lib.finetune.engine import distillation_loss, l2_to_init_penalty, make_optimizer

from helpers import AugmentedSet, die_at_step, tiny_classifier


def cfg(**kw) -> FinetuneConfig:
    return FinetuneConfig(**{**dict(epochs=2, batch_size=8, lr=1e-3, warmup_steps=2, precision="fp32"), **kw})


def distance(a, b) -> float:
    return sum(((x - y) ** 2).sum().item() for x, y in zip(a.parameters(), b.parameters()))


def test_l2_penalty_is_the_squared_distance_to_the_start():
    theta = [torch.tensor([1.0, 2.0]), torch.tensor([[3.0]])]
    theta_0 = [torch.tensor([0.0, 0.0]), torch.tensor([[1.0]])]
    assert l2_to_init_penalty(theta, theta_0).item() == pytest.approx(1 + 4 + 4)


def test_distillation_loss_mixes_label_and_teacher_cross_entropy():
    logits, teacher = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([[0.0, 1.0, 0.0]])
    labels = torch.tensor([0])
    ce = F.cross_entropy(logits, labels)
    soft = teacher.softmax(-1)
    kd = -(soft * logits.log_softmax(-1)).sum()
    assert distillation_loss(logits, teacher, labels, 0.0).item() == pytest.approx(ce.item())
    assert distillation_loss(logits, teacher, labels, 1.0).item() == pytest.approx(kd.item())
    assert distillation_loss(logits, teacher, labels, 0.25).item() == pytest.approx((0.75 * ce + 0.25 * kd).item())


def test_optimizers_and_their_checks():
    params = [torch.nn.Parameter(torch.zeros(2))]
    dev = torch.device("cpu")
    assert type(make_optimizer(params, cfg(), dev)) is torch.optim.AdamW
    adam = make_optimizer(params, cfg(optimizer="adam", weight_decay=0.0), dev)
    assert type(adam) is torch.optim.Adam and adam.defaults["weight_decay"] == 0
    sgd = make_optimizer(params, cfg(optimizer="sgd", momentum=0.8), dev)
    assert type(sgd) is torch.optim.SGD and sgd.defaults["momentum"] == 0.8
    with pytest.raises(ValueError, match="Adam without weight decay: set weight_decay 0"):
        cfg(optimizer="adam")
    with pytest.raises(ValueError, match="optimizer must be one of"):
        cfg(optimizer="lion")
    with pytest.raises(ValueError, match="distill in \\[0, 1\\]"):
        cfg(distill=1.5)


def test_new_fields_enter_the_run_cache_key_only_when_set():
    assert FinetuneConfig().recipe().keys().isdisjoint({"optimizer", "momentum", "l2_to_init", "distill",
                                                        "ema_decay", "ema_start"})
    assert FinetuneConfig(optimizer="sgd").recipe()["optimizer"] == "sgd"
    assert FinetuneConfig(l2_to_init=0.1).recipe() != FinetuneConfig().recipe()


def test_l2_toward_the_start_and_distillation_keep_the_model_near_it():
    start = tiny_classifier()
    plain = finetune(start, AugmentedSet(), cfg(), progress=False)
    l2 = finetune(start, AugmentedSet(), cfg(l2_to_init=10.0), progress=False)
    assert distance(l2, start) < 0.5 * distance(plain, start)
    distilled = finetune(start, AugmentedSet(), cfg(distill=1.0), progress=False)  # only the zero-shot targets
    assert distance(distilled, start) < 0.5 * distance(plain, start)
    x = torch.randn(6, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        agree = (distilled(x).argmax(1) == start(x).argmax(1)).float().mean().item()
    assert agree >= 0.8  # it learns the teacher's predictions, not the labels


def test_sgd_and_adam_train_and_the_linear_mode_distils_its_head():
    start = tiny_classifier()
    for c in (cfg(optimizer="sgd", lr=0.05), cfg(optimizer="adam", weight_decay=0.0)):
        assert distance(finetune(start, AugmentedSet(), c, progress=False), start) > 0
    lin = finetune(start, AugmentedSet(), cfg(mode="linear", distill=0.5, l2_to_init=1.0), progress=False)
    assert all(torch.equal(a, b) for a, b in zip(lin.image_encoder.parameters(), start.image_encoder.parameters()))


def test_cli_flags_for_the_baselines():
    args = build_finetune_parser().parse_args(["--model", "m", "--train-dataset", "d", "--output-dir", "o",
                                               "--optimizer", "sgd", "--momentum", "0.5", "--l2-to-init", "0.01",
                                               "--distill", "0.3", "--ema-decay", "0.99", "--ema-start", "zero-shot"])
    c = config_from_args(args)
    assert (c.optimizer, c.momentum, c.l2_to_init, c.distill) == ("sgd", 0.5, 0.01, 0.3)
    assert (c.ema_decay, c.ema_start) == (0.99, "zero-shot")


def test_weight_ema_equals_its_closed_form():
    from wiseft_lib.finetune.engine import WeightEMA

    d, iterates = 0.9, [torch.tensor([float(t)]) for t in (1, 2, 3, 4)]
    start = torch.tensor([10.0])
    debiased, biased = WeightEMA([start], d, "debiased"), WeightEMA([start], d, "zero-shot")
    for x in iterates:
        debiased.update([x])
        biased.update([x])
    n = len(iterates)
    weights = [(1 - d) * d ** (n - 1 - t) for t in range(n)]  # iterate t's weight after n updates
    mean = sum(w * x.item() for w, x in zip(weights, iterates))
    assert debiased.weights()[0].item() == pytest.approx(mean / (1 - d ** n))
    assert biased.weights()[0].item() == pytest.approx(mean + d ** n * 10.0)
    assert sum(weights) == pytest.approx(1 - d ** n)


def test_ema_runs_resume_bitwise_and_return_the_average(tmp_path, tiny_registered):
    from wiseft_lib.finetune import latest_checkpoint

    config = cfg(epochs=2, checkpoint_every=3, ema_decay=0.8, ema_start="zero-shot")
    full = finetune(tiny_classifier(), AugmentedSet(), config, output_dir=tmp_path / "full", progress=False)
    last = ImageClassifier.load(tmp_path / "full" / "finetuned_last.safetensors")
    assert distance(full, tiny_classifier()) < distance(last, tiny_classifier())  # pulled toward the start
    with die_at_step(8):
        finetune(tiny_classifier(), AugmentedSet(), config, output_dir=tmp_path / "cut", progress=False)
    assert latest_checkpoint(tmp_path / "cut").name == "step_00000006"
    resumed = finetune(tiny_classifier(), AugmentedSet(), config, output_dir=tmp_path / "cut", resume=True,
                       progress=False)
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_the_trajectory_lists_every_kept_checkpoint_and_each_loads_and_interpolates(tmp_path, tiny_registered):
    from wiseft_lib.core.interpolate import interpolate_weights
    from wiseft_lib.finetune import trajectory

    start = tiny_classifier()
    final = finetune(start, AugmentedSet(), cfg(checkpoint_every=2, keep_checkpoints=100), output_dir=tmp_path,
                     progress=False)  # 5 steps per epoch, 10 in all
    steps = [s for s, _ in trajectory(tmp_path)]
    assert steps == [2, 4, 5, 6, 8, 10]  # every 2 steps and each epoch end
    models = [ImageClassifier.load(path) for _, path in trajectory(tmp_path)]
    assert all(torch.equal(a, b) for a, b in zip(models[-1].state_dict().values(), final.state_dict().values()))
    assert distance(models[0], start) < distance(models[-1], start)
    mid = interpolate_weights(start.state_dict(), models[1].state_dict(), 0.5)
    start.load_state_dict(mid)  # an early checkpoint is a WiSE-FT endpoint like the last one


def test_early_stopping_equals_the_full_runs_checkpoint_at_that_epoch(tmp_path, tiny_registered):
    """stop_after_epochs keeps the full schedule (LR, data order) and ends early: bit for bit the checkpoint the
    full run wrote at that epoch, so each early-stopped point is a cached run of its own (Figure 3)."""
    from wiseft_lib.finetune import trajectory

    full = cfg(epochs=3, keep_checkpoints=10)
    finetune(tiny_classifier(), AugmentedSet(), full, output_dir=tmp_path / "full", progress=False)
    at_epoch_1 = ImageClassifier.load(dict(trajectory(tmp_path / "full"))[5])  # 5 steps per epoch
    stopped = finetune(tiny_classifier(), AugmentedSet(), cfg(epochs=3, stop_after_epochs=1), progress=False)
    for (k, a), b in zip(at_epoch_1.state_dict().items(), stopped.state_dict().values()):
        assert torch.equal(a, b), k
    assert cfg(epochs=3, stop_after_epochs=1).recipe()["stop_after_epochs"] == 1
    assert "stop_after_epochs" not in cfg(epochs=3).recipe()
    with pytest.raises(ValueError, match="stop_after_epochs must be in \\[1, epochs=3\\]"):
        cfg(epochs=3, stop_after_epochs=4)


def test_l1_shrinks_the_head_and_random_init_redraws_it_seeded():
    from wiseft_lib.finetune.engine import l1_penalty

    assert l1_penalty([torch.tensor([1.0, -2.0]), torch.tensor([[-3.0]])]).item() == 6.0
    start = tiny_classifier()
    linear = dict(mode="linear", epochs=3, lr=0.2, grad_clip=0.0)
    plain = finetune(start, AugmentedSet(), cfg(**linear), progress=False)
    sparse = finetune(start, AugmentedSet(), cfg(**linear, l1=1.0), progress=False)
    norm = lambda m: m.classification_head.weight.abs().sum().item()  # noqa: E731
    assert norm(sparse) < 0.7 * norm(plain)
    a = finetune(start, AugmentedSet(), cfg(**{**linear, "epochs": 1, "lr": 1e-9}, head_init="random"), progress=False)
    b = finetune(start, AugmentedSet(), cfg(**{**linear, "epochs": 1, "lr": 1e-9}, head_init="random"), progress=False)
    w = a.classification_head.weight
    assert torch.equal(w, b.classification_head.weight)  # seeded
    assert w.abs().max().item() <= 1 / w.shape[1] ** 0.5 + 1e-6  # nn.Linear's scale, not the zero-shot head's
    assert not torch.allclose(w, start.classification_head.weight)
    assert a.classification_head.bias.abs().max().item() < 1e-6  # drawn at zero, then 3 steps of lr 1e-9
    with pytest.raises(ValueError, match="head_init 'zero-shot' or 'random'"):
        cfg(head_init="xavier")
    c = config_from_args(build_finetune_parser().parse_args(
        ["--model", "m", "--train-dataset", "d", "--output-dir", "o", "--stop-after-epochs", "2", "--l1", "1e-5",
         "--head-init", "random"]))
    assert (c.stop_after_epochs, c.l1, c.head_init) == (2, 1e-5, "random")
