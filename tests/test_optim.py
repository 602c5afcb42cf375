"""Optimizers: the same gradients give the same parameters as torch.optim (to 1e-12), and clear errors."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from chainrule import Value  # noqa: E402
from chainrule import optim  # noqa: E402
from chainrule.optim import OPTIMIZERS, SGD, Adam, AdamW  # noqa: E402

N_PARAMS, N_STEPS = 20, 100

# How our optimizer runs the steps: "eager" is step() on the Values (one rule call per parameter),
# "gathered" is step() running the rule once on arrays gathered from the Values (as it does from
# optim._EAGER_ARRAYS_FROM parameters on), "arrays" is step_arrays() on an ArrayState, "mixed" is
# half eager, then arrays, then write_back and eager again (the same state throughout), and
# "mixed-gathered" the same with gathered eager steps.
MODES = ["eager", "gathered", "arrays", "mixed", "mixed-gathered"]
MIXED = (50, 100, 120)          # steps [50, 100) on arrays, the rest eager, 120 steps in all


def _run_both(make_ours, make_theirs, seed=0, schedule=None, mode="eager", steps=N_STEPS):
    """Feed identical random gradients to our optimizer and torch's; compare the parameters after every step.
    Array steps run in pieces of 7 parameters (so 20 parameters make two whole pieces and a short one)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(optim, "_PIECE", 7)
        patch.setattr(optim, "_EAGER_ARRAYS_FROM", 1 if mode.endswith("gathered") else 10 ** 9)
        _compare_steps(make_ours, make_theirs, seed, schedule, mode.replace("-gathered", "").replace(
            "gathered", "eager"), steps)


def _compare_steps(make_ours, make_theirs, seed, schedule, mode, steps):
    rng = np.random.RandomState(seed)
    start = rng.uniform(-2, 2, size=N_PARAMS)
    ours = [Value(float(x)) for x in start]
    theirs = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    opt, topt = make_ours(ours), make_theirs([theirs])
    if mode == "mixed":
        arrays_from, arrays_until, steps = MIXED
    else:
        arrays_from, arrays_until = (0, steps) if mode == "arrays" else (steps, steps)
    state = None
    for k in range(steps):
        grad = rng.normal(scale=3.0, size=N_PARAMS)
        theirs.grad = torch.tensor(grad, dtype=torch.float64)
        if schedule is not None:
            for group in topt.param_groups:
                group["lr"] = schedule(k)
        topt.step()
        if arrays_from <= k < arrays_until:
            if state is None:
                state = opt.array_state()
            opt.step_arrays(state, grad)
            mine = state.p.tolist()
        else:
            if state is not None:
                state.write_back()
                state = None
            for p, g in zip(ours, grad):
                p.grad = float(g)
            opt.step()
            mine = [p.data for p in ours]
        diff = max(abs(a - b) for a, b in zip(mine, theirs.detach().tolist()))
        assert diff < 1e-12, f"{mode}, step {k}: parameters differ by {diff}"
        if schedule is not None:
            assert opt.lr == schedule(k)
    if state is not None:
        state.write_back()
    diff = max(abs(p.data - t) for p, t in zip(ours, theirs.detach().tolist()))
    assert diff < 1e-12, f"{mode}: the Values differ from torch's parameters by {diff} at the end"
    assert opt.steps == steps


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_sgd_matches_torch(momentum, weight_decay, mode):
    """SGD with and without momentum and weight decay follows torch.optim.SGD for 100 steps, eager, on arrays, mixed."""
    _run_both(lambda ps: SGD(ps, lr=0.05, momentum=momentum, weight_decay=weight_decay),
              lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=momentum, weight_decay=weight_decay), mode=mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kwargs", [dict(momentum=0.9, nesterov=True), dict(momentum=0.8, dampening=0.3),
                                    dict(momentum=0.9, nesterov=True, weight_decay=0.05)])
def test_sgd_nesterov_and_dampening_match_torch(kwargs, mode):
    """Nesterov momentum and dampening follow torch.optim.SGD's formulas, eager and on arrays."""
    _run_both(lambda ps: SGD(ps, lr=0.03, **kwargs), lambda ps: torch.optim.SGD(ps, lr=0.03, **kwargs), mode=mode)


@pytest.mark.parametrize("mode", MODES)
def test_sgd_schedule_matches_torch_with_the_same_rates(mode):
    """A learning-rate function of the step (micrograd's decay) equals torch SGD given those rates step by step."""
    schedule = lambda k: 1.0 - 0.9 * k / MIXED[2]  # noqa: E731   (positive over the longest run)
    _run_both(lambda ps: SGD(ps, lr=schedule, momentum=0.5),
              lambda ps: torch.optim.SGD(ps, lr=schedule(0), momentum=0.5), schedule=schedule, mode=mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.8, 0.99)])
def test_adam_matches_torch(weight_decay, betas, mode):
    """Adam follows torch.optim.Adam to 1e-12 over 100 steps, with and without (L2) weight decay."""
    _run_both(lambda ps: Adam(ps, lr=0.01, betas=betas, weight_decay=weight_decay),
              lambda ps: torch.optim.Adam(ps, lr=0.01, betas=betas, weight_decay=weight_decay), mode=mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("weight_decay", [0.01, 0.5])
def test_adamw_matches_torch(weight_decay, mode):
    """AdamW (decoupled decay) follows torch.optim.AdamW to 1e-12 over 100 steps."""
    _run_both(lambda ps: AdamW(ps, lr=0.02, weight_decay=weight_decay),
              lambda ps: torch.optim.AdamW(ps, lr=0.02, weight_decay=weight_decay), mode=mode)


def test_adamw_default_weight_decay_matches_torch():
    """AdamW's default weight decay is torch's 1e-2, so the defaults give the same updates."""
    assert AdamW([Value(1.0)]).weight_decay == torch.optim.AdamW([torch.zeros(1)]).defaults["weight_decay"]
    _run_both(lambda ps: AdamW(ps), lambda ps: torch.optim.AdamW(ps))


@pytest.mark.parametrize("mode", MODES)
def test_adam_schedule_matches_torch(mode):
    """Adam with a learning-rate function equals torch Adam given those rates step by step."""
    schedule = lambda k: 0.05 / (1 + k)  # noqa: E731
    _run_both(lambda ps: Adam(ps, lr=schedule), lambda ps: torch.optim.Adam(ps, lr=schedule(0)), schedule=schedule,
              mode=mode)


def _as_lists(state: dict) -> dict:
    return {name: list(map(float, values)) for name, values in state.items()}


MAKERS = {
    "sgd": lambda ps: SGD(ps, lr=0.1),
    "sgd-schedule": lambda ps: SGD(ps, lr=lambda k: 1.0 - 0.9 * k / 100),
    "momentum": lambda ps: SGD(ps, lr=0.05, momentum=0.9, weight_decay=0.01),
    "nesterov": lambda ps: SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    "dampening": lambda ps: SGD(ps, lr=lambda k: 0.1 / (1 + k), momentum=0.8, dampening=0.3),
    "adam": lambda ps: Adam(ps, lr=0.01, weight_decay=0.1),
    "adam-schedule": lambda ps: Adam(ps, lr=lambda k: 0.05 / (1 + k), betas=(0.8, 0.99)),
    "adamw": lambda ps: AdamW(ps, lr=0.01),
}


@pytest.mark.parametrize("make", list(MAKERS.values()), ids=list(MAKERS))
@pytest.mark.parametrize("piece", [3, 16384])
def test_eager_and_array_steps_are_bit_for_bit_equal(make, piece, monkeypatch):
    """step() on floats, step() on gathered arrays and step_arrays() on an ArrayState run the same rule:
    the very same numbers over 100 steps, not merely close, whether the arrays are updated whole or piece
    by piece."""
    monkeypatch.setattr(optim, "_PIECE", piece)
    rng = np.random.RandomState(3)
    start, grads = rng.uniform(-1, 1, size=8), rng.normal(size=(100, 8))
    eager, gathered, arrays = ([Value(float(x)) for x in start] for _ in range(3))
    opt_e, opt_g, opt_a = make(eager), make(gathered), make(arrays)
    state = opt_a.array_state()
    for grad in grads:
        for ps in (eager, gathered):
            for p, g in zip(ps, grad):
                p.grad = float(g)
        monkeypatch.setattr(optim, "_EAGER_ARRAYS_FROM", 10 ** 9)
        opt_e.step()
        monkeypatch.setattr(optim, "_EAGER_ARRAYS_FROM", 1)
        opt_g.step()
        opt_a.step_arrays(state, grad)
        assert [p.data for p in gathered] == [p.data for p in eager] == state.p.tolist()
        assert all(type(p.data) is float for p in gathered)
    assert opt_g._rule_runs_on_arrays is True and isinstance(opt_g._state.get("exp_avg", opt_g._state.get(
        "momentum_buffer")), np.ndarray)           # the gathered steps did run on arrays
    state.write_back()
    assert _as_lists(opt_a._state) == _as_lists(opt_g._state) == _as_lists(opt_e._state)


def test_gathered_steps_continue_float_steps_and_array_states(monkeypatch):
    """An optimizer whose eager steps switch between floats and gathered arrays (its parameter count
    crossing the threshold is the same as the threshold moving) and ArrayStates in between keeps one
    state throughout: the same numbers as float steps alone."""
    rng = np.random.RandomState(5)
    start, grads = rng.uniform(-1, 1, size=6), rng.normal(size=(40, 6))
    ref, ours = [Value(float(x)) for x in start], [Value(float(x)) for x in start]
    opt_r, opt_o = Adam(ref, lr=0.02), Adam(ours, lr=0.02)
    state = None
    for k, grad in enumerate(grads):
        monkeypatch.setattr(optim, "_EAGER_ARRAYS_FROM", 10 ** 9)
        for p, g in zip(ref, grad):
            p.grad = float(g)
        opt_r.step()
        phase = (k // 5) % 4                  # floats, gathered, an ArrayState, gathered again
        if phase == 2:
            state = state or opt_o.array_state()
            opt_o.step_arrays(state, grad)
            continue
        if state is not None:
            state.write_back()
            state = None
        monkeypatch.setattr(optim, "_EAGER_ARRAYS_FROM", 10 ** 9 if phase == 0 else 1)
        for p, g in zip(ours, grad):
            p.grad = float(g)
        opt_o.step()
        assert [p.data for p in ours] == [p.data for p in ref], f"step {k}"
    assert opt_o.steps == opt_r.steps == 40


class _FloatsOnlyRMS(optim.Optimizer):
    """A learner's optimizer whose rule works on floats only (math.sqrt, a Python if)."""
    _slots = ("square",)

    def _rule(self, m, lr, t):
        def update(p, g, square):
            square = 0.9 * square + 0.1 * g * g
            if g != 0:
                p -= lr * g / (math.sqrt(square) + 1e-8)
            return p, square
        return update


def test_a_rule_that_runs_on_floats_only_keeps_eager_steps_on_floats(monkeypatch):
    """A subclass whose rule cannot run on arrays still steps eagerly past the array threshold, with
    the numbers of its float steps (it is tried on arrays once, and found to fail)."""
    rng = np.random.RandomState(7)
    start, grads = rng.uniform(-1, 1, size=70), rng.normal(size=(5, 70))
    grads[:, 3] = 0.0
    runs = []
    for threshold in (10 ** 9, 1):
        monkeypatch.setattr(optim, "_EAGER_ARRAYS_FROM", threshold)
        ps = [Value(float(x)) for x in start]
        opt = _FloatsOnlyRMS(ps, lr=0.01)
        for grad in grads:
            for p, g in zip(ps, grad):
                p.grad = float(g)
            opt.step()
        runs.append([p.data for p in ps])
        assert opt._rule_runs_on_arrays is (None if threshold > 1 else False)
    assert runs[0] == runs[1] and runs[0][3] == start[3]


def _torch_updates(make_torch, start, grads):
    w = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    opt = make_torch([w])
    for grad in grads:
        w.grad = torch.tensor(grad, dtype=torch.float64)
        opt.step()
    return w.detach().numpy()


@pytest.mark.parametrize("path", ["floats", "gathered", "arrays"])
@pytest.mark.parametrize("name, ours, theirs", [
    ("adam eps=0", lambda ps: Adam(ps, lr=0.1, eps=0.0), lambda ps: torch.optim.Adam(ps, lr=0.1, eps=0.0)),
    ("adamw eps=0", lambda ps: AdamW(ps, lr=0.1, eps=0.0), lambda ps: torch.optim.AdamW(ps, lr=0.1, eps=0.0)),
    ("adam", lambda ps: Adam(ps, lr=0.1), lambda ps: torch.optim.Adam(ps, lr=0.1)),
    ("sgd", lambda ps: SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.1),
     lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.1)),
])
def test_non_finite_gradients_and_zero_division_give_torchs_numbers(name, ours, theirs, path, monkeypatch):
    """A gradient that is always 0 with eps=0 (0 / 0 in Adam), and inf and nan gradients, give torch's
    nan and inf on every path: no ZeroDivisionError on floats and a number on arrays."""
    start = np.array([1.0, -2.0, 0.5, 3.0, 0.25])
    grads = np.array([[0.0, 1.0, np.inf, np.nan, -np.inf],
                      [0.0, -1.0, 1.0, 1.0, 1.0],
                      [0.0, 1e-300, 0.0, -np.inf, 2.0]])
    expected = _torch_updates(theirs, start, grads)
    assert not np.isfinite(expected).all()        # the case is one where non-finite numbers arise
    monkeypatch.setattr(optim, "_EAGER_ARRAYS_FROM", 1 if path == "gathered" else 10 ** 9)
    ps = [Value(float(x)) for x in start]
    opt = ours(ps)
    if path == "arrays":
        state = opt.array_state()
    for grad in grads:
        if path == "arrays":
            opt.step_arrays(state, grad)
        else:
            for p, g in zip(ps, grad):
                p.grad = float(g)
            opt.step()
    got = state.p if path == "arrays" else np.array([p.data for p in ps])
    assert opt._rule_runs_on_arrays is (True if path == "gathered" else None)
    np.testing.assert_array_equal(got, expected)      # nan where torch has nan, inf where torch has inf


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


# --- array steps: the state, write_back, and the errors that keep eager and arrays in step --------

def test_array_steps_leave_the_values_until_write_back(monkeypatch):
    """step_arrays changes state.p in place (views of it see the update) and the Values only at write_back."""
    monkeypatch.setattr(optim, "_PIECE", 2)       # the view spans two pieces
    ws = [Value(1.0), Value(2.0), Value(3.0)]
    opt = Adam(ws, lr=0.1)
    state = opt.array_state()
    first_two = state.p[:2]                       # a view, as a compiled step may hold one
    opt.step_arrays(state, np.array([1.0, -1.0, 0.0]))
    assert first_two.tolist() == pytest.approx([0.9, 2.1]) and state.p[2] == 3.0
    assert [w.data for w in ws] == [1.0, 2.0, 3.0] and opt.steps == 1
    state.write_back()
    assert [w.data for w in ws] == state.p.tolist()
    assert opt._state["exp_avg"] == state.slots["exp_avg"].tolist()


def test_array_steps_advance_the_step_count_and_schedule():
    """step_arrays counts steps and follows the learning-rate schedule exactly like step()."""
    w = Value(0.0)
    opt = SGD([w], lr=lambda k: 1.0 / (k + 1))
    state = opt.array_state()
    for k in range(4):
        opt.step_arrays(state, [1.0])
        assert (opt.steps, opt.lr) == (k + 1, 1.0 / (k + 1))
    assert state.p[0] == pytest.approx(-(1 + 1 / 2 + 1 / 3 + 1 / 4))


def test_eager_step_refuses_unwritten_array_steps():
    """step() after array steps that were not written back is a named error, not a step from stale numbers."""
    w = Value(1.0)
    opt = SGD([w], lr=0.1)
    state = opt.array_state()
    opt.step_arrays(state, [1.0])
    with pytest.raises(RuntimeError, match="write_back"):
        opt.step()
    state.write_back()
    w.grad = 1.0
    opt.step()
    assert w.data == pytest.approx(0.8) and opt.steps == 2


def test_a_new_array_state_first_writes_back_the_old_ones_steps():
    """array_state() while another state has unwritten steps writes them back first: no step is lost."""
    w = Value(1.0)
    opt = SGD([w], lr=0.1)
    old = opt.array_state()
    opt.step_arrays(old, [1.0])
    new = opt.array_state()
    assert w.data == pytest.approx(0.9) and new.p.tolist() == [w.data]
    w.grad = 1.0
    opt.step()                                    # allowed: nothing is waiting to be written back
    assert w.data == pytest.approx(0.8) and opt.steps == 2


def test_stale_array_state_is_refused():
    """An ArrayState made before eager steps (or another state's steps) is out of date: a named error."""
    w = Value(1.0)
    opt = Adam([w])
    state = opt.array_state()
    w.grad = 1.0
    opt.step()
    with pytest.raises(RuntimeError, match="array_state\\(\\) for a fresh one"):
        opt.step_arrays(state, [1.0])
    with pytest.raises(RuntimeError, match="would undo the later ones"):
        state.write_back()
    assert opt.steps == 1 and w.data != 1.0


def test_step_arrays_checks_its_arguments():
    """A gradient of the wrong shape, or another optimizer's state, is a ValueError saying what is expected."""
    ws = [Value(1.0), Value(2.0)]
    opt, other = SGD(ws), SGD([Value(0.0), Value(0.0)])
    state = opt.array_state()
    with pytest.raises(ValueError, match="1-D array of 2 gradients"):
        opt.step_arrays(state, np.zeros(3))
    with pytest.raises(ValueError, match="1-D array of 2 gradients"):
        opt.step_arrays(state, np.zeros((2, 1)))
    with pytest.raises(ValueError, match="the ArrayState this optimizer"):
        other.step_arrays(state, np.zeros(2))
    assert opt.steps == 0 and state.p.tolist() == [1.0, 2.0]


def test_nesterov_needs_momentum_and_no_dampening():
    """nesterov=True without momentum, or with dampening, is refused as torch refuses it."""
    with pytest.raises(ValueError, match="nesterov"):
        SGD([Value(1.0)], nesterov=True)
    with pytest.raises(ValueError, match="nesterov"):
        SGD([Value(1.0)], momentum=0.9, dampening=0.1, nesterov=True)
    with pytest.raises(ValueError, match="dampening"):
        SGD([Value(1.0)], momentum=0.9, dampening=1.5)
