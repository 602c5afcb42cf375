"""Optimizers: the same gradients give the same parameters as torch.optim (to 1e-12), and clear errors."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from chainrule import Value  # noqa: E402
from chainrule.optim import OPTIMIZERS, SGD, Adam, AdamW  # noqa: E402

N_PARAMS, N_STEPS = 6, 12


def _run_both(make_ours, make_theirs, seed=0, schedule=None):
    """Feed identical random gradients to our optimizer and torch's; return the largest parameter difference."""
    rng = np.random.RandomState(seed)
    start = rng.uniform(-2, 2, size=N_PARAMS)
    ours = [Value(float(x)) for x in start]
    theirs = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    opt, topt = make_ours(ours), make_theirs([theirs])
    worst = 0.0
    for k in range(N_STEPS):
        grad = rng.normal(scale=3.0, size=N_PARAMS)
        for p, g in zip(ours, grad):
            p.grad = float(g)
        theirs.grad = torch.tensor(grad, dtype=torch.float64)
        if schedule is not None:
            for group in topt.param_groups:
                group["lr"] = schedule(k)
        opt.step()
        topt.step()
        diff = max(abs(p.data - t) for p, t in zip(ours, theirs.detach().tolist()))
        worst = max(worst, diff)
        assert diff < 1e-12, f"step {k}: parameters differ by {diff}"
    assert opt.steps == N_STEPS
    return worst


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_sgd_matches_torch(momentum, weight_decay):
    """SGD with and without momentum and weight decay follows torch.optim.SGD step for step."""
    _run_both(lambda ps: SGD(ps, lr=0.05, momentum=momentum, weight_decay=weight_decay),
              lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=momentum, weight_decay=weight_decay))


def test_sgd_schedule_matches_torch_with_the_same_rates():
    """A learning-rate function of the step (micrograd's decay) equals torch SGD given those rates step by step."""
    schedule = lambda k: 1.0 - 0.9 * k / 100  # noqa: E731
    _run_both(lambda ps: SGD(ps, lr=schedule, momentum=0.5),
              lambda ps: torch.optim.SGD(ps, lr=schedule(0), momentum=0.5), schedule=schedule)


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.8, 0.99)])
def test_adam_matches_torch(weight_decay, betas):
    """Adam follows torch.optim.Adam to 1e-12 over several steps, with and without (L2) weight decay."""
    _run_both(lambda ps: Adam(ps, lr=0.01, betas=betas, weight_decay=weight_decay),
              lambda ps: torch.optim.Adam(ps, lr=0.01, betas=betas, weight_decay=weight_decay))


@pytest.mark.parametrize("weight_decay", [0.01, 0.5])
def test_adamw_matches_torch(weight_decay):
    """AdamW (decoupled decay) follows torch.optim.AdamW to 1e-12 over several steps."""
    _run_both(lambda ps: AdamW(ps, lr=0.02, weight_decay=weight_decay),
              lambda ps: torch.optim.AdamW(ps, lr=0.02, weight_decay=weight_decay))


def test_adamw_default_weight_decay_matches_torch():
    """AdamW's default weight decay is torch's 1e-2, so the defaults give the same updates."""
    assert AdamW([Value(1.0)]).weight_decay == torch.optim.AdamW([torch.zeros(1)]).defaults["weight_decay"]
    _run_both(lambda ps: AdamW(ps), lambda ps: torch.optim.AdamW(ps))


def test_adam_schedule_matches_torch():
    """Adam with a learning-rate function equals torch Adam given those rates step by step."""
    schedule = lambda k: 0.05 / (1 + k)  # noqa: E731
    _run_both(lambda ps: Adam(ps, lr=schedule), lambda ps: torch.optim.Adam(ps, lr=schedule(0)), schedule=schedule)


def test_lr_reports_the_rate_of_the_last_step():
    """``.lr`` is the first step's rate before any step, then the rate the latest step used; ``.steps`` counts."""
    w = Value(0.0)
    opt = SGD([w], lr=lambda k: 1.0 - 0.9 * k / 100)
    assert (opt.lr, opt.steps) == (1.0, 0)
    for _ in range(3):
        w.grad = 1.0
        opt.step()
    assert opt.steps == 3
    assert opt.lr == pytest.approx(1.0 - 0.9 * 2 / 100)
    assert w.data == pytest.approx(-(1.0 + 0.991 + 0.982))


def test_lr_can_be_reassigned():
    """Assigning a new rate changes the size of the next step."""
    w = Value(0.0)
    opt = SGD([w], lr=1.0)
    opt.lr = 0.25
    w.grad = 2.0
    opt.step()
    assert w.data == -0.5 and opt.lr == 0.25


def test_optimizers_touch_only_data_and_grad():
    """A step changes .data only; zero_grad sets .grad to 0; labels and graph links are left alone."""
    a, b = Value(1.0, label="a"), Value(2.0, label="b")
    c = a * b
    for cls in OPTIMIZERS.values():
        opt = cls([a, b])
        a.grad, b.grad = 0.5, -0.5
        before = (a.data, b.data)
        opt.step()
        assert (a.data, b.data) != before
        assert (a.grad, b.grad) == (0.5, -0.5)
        opt.zero_grad()
        assert (a.grad, b.grad) == (0.0, 0.0)
        assert (a.label, b.label, c._prev) == ("a", "b", (a, b))


def test_sgd_trains_a_tiny_model():
    """SGD on a quadratic bowl reaches the minimum (the optimizer actually descends)."""
    w = Value(5.0)
    opt = SGD([w], lr=0.1)
    for _ in range(200):
        loss = (w - 3.0) ** 2
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert w.data == pytest.approx(3.0, abs=1e-9)


def test_optimizers_registry():
    """OPTIMIZERS maps the command-line names to the classes."""
    assert OPTIMIZERS == {"sgd": SGD, "adam": Adam, "adamw": AdamW}


@pytest.mark.parametrize("kwargs, match", [
    (dict(lr=-0.1), "lr must be >= 0"),
    (dict(lr=float("nan")), "lr must be a finite number"),
    (dict(lr="fast"), "lr must be a finite number"),
    (dict(momentum=-0.5), "momentum"),
    (dict(momentum=1.0), "momentum"),
    (dict(weight_decay=-1e-4), "weight_decay"),
])
def test_sgd_rejects_bad_arguments(kwargs, match):
    """Bad hyperparameters are ValueErrors naming the argument."""
    with pytest.raises(ValueError, match=match):
        SGD([Value(1.0)], **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(lr=-1e-3), "lr"),
    (dict(betas=(0.9,)), "betas must be a pair"),
    (dict(betas=(1.0, 0.999)), "betas\\[0\\]"),
    (dict(betas=(0.9, -0.1)), "betas\\[1\\]"),
    (dict(eps=-1e-8), "eps"),
    (dict(weight_decay=-0.1), "weight_decay"),
])
@pytest.mark.parametrize("cls", [Adam, AdamW])
def test_adam_rejects_bad_arguments(cls, kwargs, match):
    """Bad Adam/AdamW hyperparameters are ValueErrors naming the argument."""
    with pytest.raises(ValueError, match=match):
        cls([Value(1.0)], **kwargs)


def test_bad_schedule_is_caught_early_and_names_the_step():
    """A schedule that returns a negative rate fails at construction (step 0) or at the step where it goes bad."""
    with pytest.raises(ValueError, match="step 0"):
        SGD([Value(1.0)], lr=lambda k: -1.0)
    w = Value(1.0)
    opt = SGD([w], lr=lambda k: 1.0 - 0.5 * k)
    for _ in range(3):
        opt.step()
    with pytest.raises(ValueError, match="step 3"):
        opt.step()
    assert opt.steps == 3


def test_parameter_list_errors():
    """An empty list, a non-Value entry and a repeated parameter are clear errors."""
    with pytest.raises(ValueError, match="empty"):
        SGD([])
    with pytest.raises(TypeError, match="params\\[1\\] must be a Value"):
        Adam([Value(1.0), 2.0])
    w = Value(1.0)
    with pytest.raises(ValueError, match="appears twice"):
        SGD([w, w])


def test_parameters_from_a_generator_are_kept():
    """A generator of parameters is read once into a list (not exhausted before the first step)."""
    ws = [Value(1.0), Value(2.0)]
    opt = SGD((w for w in ws), lr=1.0)
    for w in ws:
        w.grad = 1.0
    opt.step()
    assert [w.data for w in ws] == [0.0, 1.0]
    assert math.isclose(opt.lr, 1.0)
