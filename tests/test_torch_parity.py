"""Training in chainrule and in PyTorch from the same start: every loss and optimizer ends at the same
parameters after 100 steps (1e-10), and each names its PyTorch counterpart in its docstring."""

import random
import re

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from chainrule import MLP, SGD, Adam, AdamW, from_torch, l2_penalty, to_torch  # noqa: E402
from chainrule.losses import (LOSSES, bce_with_logits, hinge_loss, mse_loss,  # noqa: E402
                              softmax_cross_entropy)
from chainrule.optim import OPTIMIZERS  # noqa: E402

# --- training: 100 steps in each library from the same start ------------------------------------------

RNG = random.Random(11)
X = [[RNG.uniform(-2, 2) for _ in range(3)] for _ in range(8)]
Y01 = [RNG.choice([0, 1]) for _ in X]
Y_CLASS = [RNG.randrange(3) for _ in X]
Y_REAL = [RNG.uniform(-1, 1) for _ in X]


def _t(values, dtype=torch.float64):
    return torch.tensor(values, dtype=dtype)


# name -> (outputs, hidden activation, chainrule loss of the outputs, the PyTorch counterpart of the same)
LOSS_PAIRS = {
    "mse": (1, "tanh", lambda s: mse_loss(s, Y_REAL), lambda o: F.mse_loss(o.squeeze(-1), _t(Y_REAL))),
    "bce": (1, "tanh", lambda s: bce_with_logits(s, Y01),
            lambda o: F.binary_cross_entropy_with_logits(o.squeeze(-1), _t(Y01))),
    "hinge": (1, "relu", lambda s: hinge_loss(s, [2 * y - 1 for y in Y01]),
              lambda o: torch.relu(1 - _t([2 * y - 1 for y in Y01]) * o.squeeze(-1)).mean()),
    "cross_entropy": (3, "relu", lambda s: softmax_cross_entropy(s, Y_CLASS),
                      lambda o: F.cross_entropy(o, _t(Y_CLASS, torch.int64))),
}
OPTIMIZER_PAIRS = {
    "sgd_momentum": (lambda ps: SGD(ps, lr=0.1, momentum=0.9),
                     lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9)),
    "adam": (lambda ps: Adam(ps, lr=0.01), lambda ps: torch.optim.Adam(ps, lr=0.01)),
    "adamw": (lambda ps: AdamW(ps, lr=0.01, weight_decay=0.1),
              lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.1)),
}


def _train_both(model, ours_loss, theirs_loss, make_ours, make_theirs, steps=100):
    """Train model in chainrule and its to_torch copy in PyTorch; return both losses and the copy."""
    net = to_torch(model)
    opt, topt = make_ours(model.parameters()), make_theirs(net.parameters())
    inputs = _t(X)
    for _ in range(steps):
        loss = ours_loss([model(x) for x in X])         # forward
        model.zero_grad()
        loss.backward()                                  # backward
        opt.step()                                       # update
        tloss = theirs_loss(net(inputs))
        topt.zero_grad()
        tloss.backward()
        topt.step()
    return loss.data, tloss.item(), net


@pytest.mark.parametrize("optimizer", list(OPTIMIZER_PAIRS))
@pytest.mark.parametrize("loss", list(LOSS_PAIRS))
def test_training_100_steps_gives_the_same_parameters_in_both_libraries(loss, optimizer):
    """From the same start, 100 steps of each loss and optimizer end at the same parameters (1e-10)."""
    nout, hidden, ours_loss, theirs_loss = LOSS_PAIRS[loss]
    model = MLP(3, [5, 4, nout], activation=hidden, output_activation="linear")
    start = [p.data for p in model.parameters()]
    ours, theirs, net = _train_both(model, ours_loss, theirs_loss, *OPTIMIZER_PAIRS[optimizer])
    trained = [p.data for p in model.parameters()]
    assert max(abs(a - b) for a, b in zip(trained, start)) > 1e-3       # training moved the weights
    diff = max(abs(a - b.data) for a, b in zip(trained, from_torch(net).parameters()))
    assert diff < 1e-10, diff
    assert ours == pytest.approx(theirs, rel=1e-10, abs=1e-12)


def test_l2_penalty_equals_pytorch_weight_decay_of_twice_alpha():
    """SGD on loss + l2_penalty(params, alpha) trains like torch.optim.SGD(weight_decay=2 * alpha), 100 steps."""
    alpha = 0.01
    model = MLP(3, [5, 1], activation="tanh", output_activation="linear")
    _, _, net = _train_both(model, lambda s: mse_loss(s, Y_REAL) + l2_penalty(model.parameters(), alpha),
                            LOSS_PAIRS["mse"][3], lambda ps: SGD(ps, lr=0.1, momentum=0.9),
                            lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=2 * alpha))
    diff = max(abs(a.data - b.data) for a, b in zip(model.parameters(), from_torch(net).parameters()))
    assert diff < 1e-10, diff


def test_a_learning_rate_function_is_pytorchs_lambdalr():
    """SGD(lr=schedule) trains like torch.optim.SGD(lr=1.0) with LambdaLR(schedule) stepped after each step."""
    schedule = lambda k: 0.5 - 0.4 * k / 100  # noqa: E731
    model = MLP(3, [5, 1], activation="tanh", output_activation="linear")
    schedulers = []

    def make_theirs(ps):
        opt = torch.optim.SGD(ps, lr=1.0, momentum=0.5)
        schedulers.append(torch.optim.lr_scheduler.LambdaLR(opt, schedule))
        return opt

    net = to_torch(model)
    opt, topt = SGD(model.parameters(), lr=schedule, momentum=0.5), make_theirs(net.parameters())
    for _ in range(100):
        loss = mse_loss([model(x) for x in X], Y_REAL)
        model.zero_grad()
        loss.backward()
        opt.step()
        tloss = LOSS_PAIRS["mse"][3](net(_t(X)))
        topt.zero_grad()
        tloss.backward()
        topt.step()
        schedulers[0].step()
    assert opt.lr == pytest.approx(schedule(99))
    diff = max(abs(a.data - b.data) for a, b in zip(model.parameters(), from_torch(net).parameters()))
    assert diff < 1e-10, diff


def _named_counterparts(doc: str) -> list[str]:
    return re.findall(r"``(torch(?:\.\w+)+)", doc or "")


def _resolve(dotted: str):
    obj = torch
    for part in dotted.split(".")[1:]:
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize("thing", sorted(LOSSES.values(), key=lambda f: f.__name__) + [l2_penalty]
                         + [OPTIMIZERS[name] for name in sorted(OPTIMIZERS)], ids=lambda t: t.__name__)
def test_every_loss_and_optimizer_names_its_pytorch_counterpart(thing):
    """Each loss and optimizer's docstring names, in ``torch.…`` form, a PyTorch function or class that exists."""
    names = _named_counterparts(thing.__doc__)
    assert names, f"{thing.__name__}'s docstring names no PyTorch counterpart"
    for name in names:
        assert callable(_resolve(name)), name
