"""The replay's recording and planning stages (record.py, plan.py) against eager, on graph shapes
chosen to break them: sums of every association and fanout, user table rules of one and three
inputs, outputs that are parameters, inputs or constants, pruned and captured nodes, baked
constants, more than 64 outputs. Every check calls the compiled function at least twice (the first
call records, later ones replay) and compares each output and, for each output's backward, every
captured Value's gradient with eager (relative 1e-12)."""

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chainrule
from chainrule import MLP, Value
from chainrule.losses import l2_penalty
from chainrule.replay import NotReplayableError
from replay_checks import assert_close

FMA = chainrule.primitive("record_fma", lambda m, a, b, c: a * b + c,
                          lambda m, g, out, a, b, c: (g * b, g * a, g), n_inputs=3, replace=True)
CUBE = chainrule.primitive("record_cube", lambda m, a: a * a * a,
                           lambda m, g, out, a: (g * 3 * a * a,), replace=True)


def leaves(out) -> list:
    """The results of fn in order (Values or ReplayValues), nested lists flattened."""
    if isinstance(out, (list, tuple)):
        return [v for item in out for v in leaves(item)]
    return [out]


def as_values(a):
    return [as_values(x) for x in a] if isinstance(a, list) else Value(a)


def observe(call, outputs_of, captured, n_outputs):
    """Each output's data, and per output the captured Values' gradients after its backward alone."""
    outs = outputs_of(call())
    data = [o.data for o in outs]
    grads = []
    for k in range(n_outputs):
        outs = outputs_of(call()) if k else outs
        for v in captured:
            v.grad = 0.0
        outs[k].backward()
        grads.append([v.grad for v in captured])
    return data, grads


def check_compiled(fn, captured, argsets):
    """compile(fn) equals fn run eagerly, on every call of ``argsets`` (the first one records).
    Returns the Compiled function for further checks."""
    assert len(argsets) >= 2
    compiled = chainrule.compile(fn)
    for args in argsets:
        n = len(leaves(fn(*as_values(list(args)))))
        got = observe(lambda: compiled(*args), leaves, captured, n)
        expected = observe(lambda: fn(*as_values(list(args))), leaves, captured, n)
        assert len(got[0]) == len(expected[0]) == n
        assert_close(got[0], expected[0])
        for g, e in zip(got[1], expected[1]):
            assert_close(g, e)
    return compiled


def check_vmap(fn, captured, batches, reduce):
    """vmap(fn, reduce) on each batch equals eager: the mean/sum of fn's loss over the rows and its
    gradients, or with reduce=None every output of every row."""
    batched = chainrule.vmap(fn, reduce=reduce)
    for X in batches:
        X = np.asarray(X, dtype=float)
        rows = [fn(as_values(x.tolist())) for x in X]
        if reduce is None:
            assert_close(batched(X), [[v.data for v in leaves(r)] if isinstance(r, list) else r.data
                                      for r in rows])
            continue
        losses = [r[0] if isinstance(r, tuple) else r for r in rows]         # (loss, aux) pairs too
        total = losses[0]
        for r in losses[1:]:
            total = total + r
        if reduce == "mean":
            total = total * (1.0 / len(X))
        for v in captured:
            v.grad = 0.0
        total.backward()
        expected = [v.grad for v in captured]
        for v in captured:
            v.grad = 0.0
        loss = batched(X)
        loss = loss[0] if isinstance(loss, tuple) else loss
        loss.backward()
        assert_close(loss.data, total.data)
        assert_close([v.grad for v in captured], expected)
    return batched


def params(*numbers):
    return [Value(x) for x in numbers]


def grids(compiled) -> int:
    """How many of a recording's kernels are matrix products."""
    return sum(getattr(k, "grid", None) is not None for k in compiled._program.kernels)


# --- 1. sums -----------------------------------------------------------------------------------

def left_deep(ts):
    s = ts[0]
    for t in ts[1:]:
        s = s + t
    return s


def right_deep(ts):
    s = ts[-1]
    for t in reversed(ts[:-1]):
        s = t + s
    return s


def balanced(ts):
    if len(ts) == 1:
        return ts[0]
    h = len(ts) // 2
    return balanced(ts[:h]) + balanced(ts[h:])


def mixed(ts):
    return left_deep(ts[:2]) + right_deep(ts[2:]) if len(ts) > 2 else left_deep(ts)


FOLDS = {"left": left_deep, "right": right_deep, "balanced": balanced, "mixed": mixed,
         "sum0": lambda ts: sum(ts)}

# One term of a sum: what it multiplies, as (index into the pool of per-example inputs and shared
# parameters, index, kind); kinds pick plain terms and products of each example-ness.
TERM = st.tuples(st.integers(0, 5), st.integers(0, 5), st.sampled_from(["plain", "prod", "tanh"]))


@settings(deadline=None, max_examples=80)
@given(terms=st.lists(TERM, min_size=1, max_size=9), folds=st.lists(st.sampled_from(sorted(FOLDS)), min_size=1, max_size=3),
       reuse=st.sampled_from(["none", "inner_output", "inner_fanout", "twice"]))
def test_sums_of_every_association_and_fanout_match_eager(terms, folds, reuse):
    """Sums associated left-deep, right-deep, balanced, mixed or by sum() from 0, over plain terms
    and products of shared and per-example factors, with an inner partial sum that is also an
    output or used elsewhere, or the same sum added to itself, equal eager."""
    w = params(0.3, -0.7, 1.1)

    def fn(x0, x1, x2):
        pool = [x0, x1, x2] + w
        ts = [pool[a] if k == "plain" else pool[a] * pool[b] if k == "prod" else (pool[a] * pool[b]).tanh()
              for a, b, k in terms]
        outs = []
        for f in folds:
            s = FOLDS[f](ts)
            if reuse == "inner_output" and len(ts) > 2:
                inner = ts[1] + ts[2]
                s = ts[0] + inner
                outs.append(inner)
            elif reuse == "inner_fanout" and len(ts) > 2:
                inner = ts[1] + ts[2]
                s = (ts[0] + inner) * inner
            elif reuse == "twice":
                s = s + s
            outs.append(s)
        return outs
    check_compiled(fn, w, [(0.5, -1.0, 2.0), (1.5, 0.25, -0.75), (-2.0, 1.0, 0.5)])


def test_same_node_twice_and_products_used_twice():
    """x + x, a product used by two sums, and a product used twice in one sum equal eager."""
    w = params(0.4, -1.3)

    def fn(x):
        p = w[0] * x
        q = w[1] * w[1]
        return [x + x, p + p + w[1], (p + q) * (p + w[0]), p * p + q]
    check_compiled(fn, w, [(0.5,), (2.0,), (-1.5,)])


def test_shared_products_and_an_l2_penalty_inside_a_per_example_sum():
    """A shared weight times a shared weight inside a per-example sum, and a sum of only shared
    terms (an L2 penalty) added to a per-example graph, equal eager, compiled and under vmap."""
    random.seed(3)
    model = MLP(2, [3, 1], activation="tanh", output_activation="linear")
    ps = model.parameters()

    def fn(x):
        out = model(x)
        return (out - 1.0) ** 2 + ps[0] * ps[1] + out * ps[2] * ps[3] + l2_penalty(ps, 1e-2)
    check_compiled(fn, ps, [([0.5, -1.0],), ([2.0, 0.25],)])
    rng = np.random.default_rng(0)
    for reduce in ("mean", "sum", None):
        check_vmap(fn, ps, [rng.normal(size=(5, 2)), rng.normal(size=(3, 2)), rng.normal(size=(1, 2))], reduce)


def test_neurons_of_one_layer_written_with_different_associations_are_one_matrix_product():
    """Two neurons whose weighted sums are associated differently (a + (b + c) and (a + b) + c) are
    still one matrix product over their inputs, as before the numpy planner, and equal eager."""
    w = [params(0.1, 0.2, 0.3), params(-0.4, 0.5, -0.6)]

    def fn(x):
        n0 = w[0][0] * x[0] + (w[0][1] * x[1] + w[0][2] * x[2])
        n1 = (w[1][0] * x[0] + w[1][1] * x[1]) + w[1][2] * x[2]
        return n0.tanh() * n1.tanh()
    f = check_compiled(fn, w[0] + w[1], [([1.0, 2.0, 3.0],), ([-0.5, 0.25, 2.0],)])
    assert grids(f) == 1


# --- 2. ops: user table rules, powers, negation, subtraction, division ---------------------------

def test_user_table_rules_of_three_inputs_and_of_one_input():
    """chainrule.primitive rules of 3 inputs (the same node twice among them too) and of 1 input,
    on per-example and on shared operands, equal eager."""
    w = params(0.3, -0.2, 0.5)

    def fn(x):
        return [FMA(x, w[0], w[1]) + FMA(w[0], w[1], w[2]), CUBE(x) * CUBE(w[2]), FMA(x, x, w[0]),
                FMA(CUBE(x), w[1], FMA(x, x, x)), FMA(w[0], w[1], x), FMA(Value(2.0), Value(3.0), x),
                FMA(Value(2.0), Value(3.0), w[2]), FMA(Value(2.0), w[0], Value(0.5))]
    check_compiled(fn, w, [(1.0,), (2.0,), (-0.5,)])
    # Under vmap a rule's result is per example when any input is, not only its first one.
    rng = np.random.default_rng(2)
    check_vmap(lambda x: FMA(w[0], Value(2.0), x[0]) * FMA(Value(1.5), w[1], CUBE(x[1])), w,
               [rng.normal(size=(4, 2)), rng.normal(size=(2, 2))], "mean")


def test_powers_of_several_constants_in_one_group_and_negation_subtraction_division():
    """x ** 2, ** 0.5, ** -1 and ** 3 at one depth (one group with a per-node constant), -x, x - y
    and / equal eager."""
    w = params(0.3, 0.2, 0.5)

    def fn(xs):
        bases = [xs[i] * w[i % 3] + 2.0 for i in range(4)]
        powers = [b ** k for b, k in zip(bases, (2, 0.5, -1, 3))]
        return powers + [-xs[0] * w[0], xs[1] - w[1], w[2] / xs[2], xs[3] / w[2], w[0] - w[1], -w[2]]
    check_compiled(fn, w, [([1.0, 2.0, 3.0, 4.0],), ([0.5, -1.0, 1.5, 2.5],)])


# --- 3. outputs ----------------------------------------------------------------------------------

def test_outputs_that_are_parameters_inputs_constants_or_the_same_node_twice():
    """Outputs that are a parameter returned unchanged, an input returned unchanged, the same node
    twice, a constant Value(3.0), and nodes that depend on nothing differentiable, equal eager."""
    w = params(0.7, -0.4)

    def fn(x, y):
        u = w[0] * x + w[1]
        return [w[0], x, u, u, Value(3.0), Value(2.0) * 4.0, y * 2.0, w[1]]
    check_compiled(fn, w, [(1.0, 5.0), (2.0, -3.0), (0.0, 0.5)])


def test_functions_ignoring_arguments_or_taking_none():
    """fn ignoring some arguments, and fn of no arguments at all (parameters only), equal eager."""
    w = params(0.7, -0.4)
    check_compiled(lambda x, y, z: w[0] * y, w, [(1.0, 2.0, 3.0), (4.0, 5.0, 6.0)])
    f = check_compiled(lambda: [w[0] * w[1], w[0], Value(3.0)], w, [(), ()])
    w[0].data = 2.0                                    # parameters are read at every call
    assert f()[0].data == 2.0 * -0.4


def test_a_list_of_lists_of_results():
    """A result that is a list of lists keeps its shape, and each entry equals eager."""
    w = params(0.7, -0.4)
    f = check_compiled(lambda x: [[w[0] * x, x], [Value(1.0)], [w[1], (w[1] * x).tanh()]], w, [(1.0,), (-2.0,)])
    out = f(0.5)
    assert [len(row) for row in out] == [2, 1, 2]


def test_more_than_64_outputs():
    """80 outputs (bit sets of the outputs wider than 64 bits): each output's backward reaches only
    its own parameters, as eager."""
    w = params(*[0.01 * i for i in range(1, 81)])
    shared = Value(0.5)
    check_compiled(lambda x: [(wi * x + shared).tanh() for wi in w], w + [shared], [(1.0,), (2.0,)])
    rng = np.random.default_rng(3)
    batches = [rng.normal(size=(5, 1)), rng.normal(size=(2, 1))]
    check_vmap(lambda x: [(wi * x[0] + shared).tanh() for wi in w], w, batches, None)
    # A loss and 79 aux outputs: the aux rows equal eager, the loss's gradient reaches only its path.
    f = check_vmap(lambda x: ((w[0] * x[0]).tanh(), [(wi * x[0]).sigmoid() for wi in w[1:]]), w, batches, "mean")
    loss, aux = f(batches[0])
    assert_close(aux, [[(wi * float(x[0])).sigmoid().data for wi in w[1:]] for x in batches[0]])


# --- 4. what is pruned, what is refused --------------------------------------------------------

def test_unused_ops_are_pruned_even_a_closure_op():
    """Ops fn builds and throws away are not replayed (the recording counts the same nodes as
    without them), even one defined by a closure, which a replay could not run."""
    w = params(0.3, 0.2, 0.9)

    def lean(x):
        return w[0] * x

    def wasteful(x):
        _ = (w[2] * x).exp() + w[1]              # unused, over a parameter used nowhere else
        doubled = Value(x.data * 2, (x,), "dbl")

        def _backward():
            x.grad += 2 * doubled.grad
        doubled._backward = _backward              # unused closure op
        return w[0] * x
    f = check_compiled(wasteful, w, [(1.0,), (2.0,)])
    g = check_compiled(lean, w, [(1.0,), (2.0,)])
    assert f._program.n_nodes == g._program.n_nodes
    assert f._program.n_live == 1                  # w[1] and w[2] fed only the unused op
    assert f.n_groups == g.n_groups == 1


def test_a_used_closure_op_is_refused_naming_chainrule_primitive():
    """An op defined by a closure that an output depends on raises NotReplayableError naming
    chainrule.primitive, on the first call."""
    w = Value(0.3)

    def fn(x):
        doubled = Value(x.data * 2, (x,), "dbl")

        def _backward():
            x.grad += 2 * doubled.grad
        doubled._backward = _backward
        return w * doubled
    with pytest.raises(NotReplayableError, match=r"op 'dbl'.*chainrule\.primitive\("):
        chainrule.compile(fn)(1.0)


def test_live_interior_nodes_and_a_parameter_in_two_layers():
    """A node made by an op before the call (w3 = w * 3) is read live and gradients continue below
    it; a parameter used in two layers sums both paths; all as eager."""
    w = params(0.3, 0.2, -0.6)
    w3 = w[0] * 3
    both = (w[1] + w[2]).tanh()

    def fn(x):
        h = (w3 * x + w[1]).tanh()
        return [h * w3 + both, (h * w[0] + w3 * w[0]).sigmoid(), w3]
    check_compiled(fn, w + [w3, both], [(1.0,), (2.0,), (-0.5,)])
    random.seed(1)
    model = MLP(2, [3, 3, 1])

    def shared_layer(x):
        first = model.layers[0](x)
        return model.layers[1](model.layers[0](first[:2]))[0] + sum(first)
    check_compiled(shared_layer, model.parameters(), [([1.0, 2.0],), ([0.5, -1.0],)])


def test_baked_constants():
    """Ops on constants only are baked (Value(2.0).exp() * x), a Value(2.0) made once and used twice
    is one constant, and both equal eager; a constant made from an input's .data is refused."""
    w = Value(0.5)

    def fn(x):
        c = Value(2.0)
        return [Value(2.0).exp() * x, c * x + c * w, (Value(1.0) + Value(3.0)).tanh() * w]
    check_compiled(fn, [w], [(1.0,), (-3.0,)])
    with pytest.raises(NotReplayableError, match=r"Value\(1\.5\) from the number of an input"):
        chainrule.compile(lambda x: Value(x.data) * w)(1.5)
    with pytest.raises(NotReplayableError, match=r"the result of op '\*'"):
        chainrule.compile(lambda x: Value((x * w).data) + x)(1.5)


# --- 5. models, vmap ------------------------------------------------------------------------------

@settings(deadline=None, max_examples=8)
@given(widths=st.lists(st.integers(1, 6), min_size=1, max_size=3), n_in=st.integers(1, 4), seed=st.integers(0, 100))
def test_mlps_of_various_widths_are_matrix_products_and_match_eager(widths, n_in, seed):
    """model(x) of an MLP of any widths equals eager, and each hidden layer's weighted sums are one
    matrix product and its activations one group; the linear last layer is one matrix product per
    output (groups are split by the outputs that depend on them)."""
    random.seed(seed)
    model = MLP(n_in, widths, activation="tanh", output_activation="linear")
    rng = np.random.default_rng(seed)
    f = check_compiled(model, model.parameters(), [(rng.normal(size=n_in).tolist(),) for _ in range(3)])
    hidden = len(widths) - 1
    assert grids(f) == hidden + widths[-1]
    assert f.n_groups == 2 * hidden + widths[-1]


def test_vmap_of_a_per_example_loss_with_an_l2_term():
    """vmap of a per-example loss with an L2 penalty equals eager for reduce mean and sum, and
    reduce=None gives every example's outputs."""
    random.seed(5)
    model = MLP(3, [4, 2], activation="relu", output_activation="linear")
    ps = model.parameters()

    def loss(x):
        out = model(x)
        return (out[0] - out[1]) ** 2 + l2_penalty(ps, 1e-3)
    rng = np.random.default_rng(1)
    batches = [rng.normal(size=(n, 3)) for n in (6, 1, 4)]
    for reduce in ("mean", "sum"):
        check_vmap(loss, ps, batches, reduce)
    check_vmap(lambda x: model(x), ps, batches, None)


# --- 6. random programs --------------------------------------------------------------------------

OPS = ["+", "*", "-", "neg", "/", "powk", "tanh", "relu", "exp", "fma", "cube", "sum", "dot", "twice",
       "const", "baked", "unused"]
OP = st.tuples(st.sampled_from(OPS), st.lists(st.integers(0, 40), min_size=1, max_size=6),
               st.sampled_from([2, 0.5, -1, 3]), st.sampled_from(sorted(FOLDS)))


def random_program(ops, outs):
    """fn(xs) building ``ops`` over a pool of inputs, parameters, a captured interior node and the
    ops made so far, returning the pool entries ``outs``; and the captured Values."""
    w = params(0.3, -0.8, 1.2)
    w3 = (w[0] * 3).tanh()
    captured = w + [w3]

    def fn(xs):
        pool = list(xs) + captured
        for kind, picks, k, fold in ops:
            ps = [pool[i % len(pool)] for i in picks]
            a, b = ps[0], ps[-1]
            v = {"+": lambda: a + b, "*": lambda: a * b, "-": lambda: a - b, "neg": lambda: -a,
                 "/": lambda: a / (b * b + 1.0), "powk": lambda: (a.sigmoid() + 0.5) ** k,
                 "tanh": lambda: a.tanh(), "relu": lambda: a.relu(), "exp": lambda: a.tanh().exp(),
                 "fma": lambda: FMA(a, ps[len(ps) // 2], b), "cube": lambda: CUBE(a.tanh()),
                 "sum": lambda: FOLDS[fold](ps), "dot": lambda: FOLDS[fold]([p * q for p, q in zip(ps, ps[::-1])]),
                 "twice": lambda: a + a, "const": lambda: Value(2.5), "baked": lambda: Value(0.5).exp() * a,
                 "unused": lambda: (a * b, a)[1]}[kind]()
            pool.append(v)
        return [pool[i % len(pool)] for i in outs]
    return fn, captured


@settings(deadline=None, max_examples=120)
@given(ops=st.lists(OP, min_size=1, max_size=12), outs=st.lists(st.integers(0, 60), min_size=1, max_size=5),
       xs=st.lists(st.lists(st.floats(-1.5, 1.5), min_size=3, max_size=3), min_size=2, max_size=3, unique_by=tuple))
def test_random_programs_match_eager(ops, outs, xs):
    """Random programs mixing every op above, sums of every association, fanout, constants, unused
    ops and a captured interior node, with several outputs, equal eager."""
    fn, captured = random_program(ops, outs)
    check_compiled(fn, captured, [(x,) for x in xs])


@settings(deadline=None, max_examples=60)
@given(ops=st.lists(OP, min_size=1, max_size=10), outs=st.lists(st.integers(0, 60), min_size=1, max_size=4),
       reduce=st.sampled_from(["mean", "sum", None]), seed=st.integers(0, 1000))
def test_random_programs_under_vmap_match_eager(ops, outs, reduce, seed):
    """The same random programs as one example's function under vmap: with reduce mean or sum the
    first output is the loss (gradients as eager backward on the batch loss), with None every
    output of every row equals eager."""
    fn, captured = random_program(ops, outs)
    example = (lambda x: fn(x)[0]) if reduce else fn
    rng = np.random.default_rng(seed)
    check_vmap(example, captured, [rng.uniform(-1.5, 1.5, size=(n, 3)) for n in (4, 1, 3)], reduce)


def test_repr_and_group_count_say_what_was_recorded():
    """Before the first call the repr says so; after it, the repr counts the recorded nodes, the
    groups one replay runs and the captured Values (w * x + b: five nodes, one fused sum)."""
    w, b = Value(0.5), Value(-1.0)

    def fn(x):
        return w * x + b
    f = chainrule.compile(fn)
    assert repr(f) == "Compiled(fn, not recorded yet)" and f.n_groups == 0
    check_compiled(fn, [w, b], [(1.0,), (2.0,)])
    f(1.0)
    assert repr(f) == "Compiled(fn: 5 nodes -> 1 groups, 2 captured Values)" and f.n_groups == 1


def test_which_refusal_fires_first():
    """A constant made from an input's .data is refused even when fn discards it, and before a
    closure op; of two closure ops the one made first is named; a closure op over constants only
    is baked and not refused."""
    w = Value(0.3)

    def discarded(x):
        _ = Value(x.data)
        return w * x

    def closure(x, name):
        out = Value(x.data * 2, (x,), name)
        out._backward = lambda: None
        return out

    with pytest.raises(NotReplayableError, match="from the number of an input"):
        chainrule.compile(discarded)(1.0)
    with pytest.raises(NotReplayableError, match="from the number of an input"):
        chainrule.compile(lambda x: w * closure(x, "dbl") * Value(x.data))(1.0)
    with pytest.raises(NotReplayableError, match="cannot replay op 'first'"):
        chainrule.compile(lambda x: w * closure(x, "first") * closure(x, "second"))(1.0)
    check_compiled(lambda x: w * x * closure(Value(2.0) * Value(3.0), "baked"), [w], [(1.0,), (2.0,)])
