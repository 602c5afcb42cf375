"""A small, safe expression language that builds Values: ``tanh(x1*w1 + x2*w2 + b)``.

The grammar, loosest binding first (Python's own rules for these operators)::

    sum      :=  product (('+' | '-') product)*
    product  :=  unary (('*' | '/') unary)*
    unary    :=  '-' unary  |  power
    power    :=  atom ('**' unary)?
    atom     :=  NUMBER  |  NAME  |  '(' sum ')'  |  FUNCTION '(' sum ')'

``**`` is right-associative and binds tighter than unary minus, so ``-x**2`` is ``-(x**2)`` and
``2**-x`` is ``2**(-x)``. Numbers are ``3``, ``0.5``, ``.5``, ``1e-3``; names are
``[A-Za-z_][A-Za-z0-9_]*``; the functions (exactly one argument each) are listed in ``FUNCTIONS``.

The text is parsed, never handed to ``eval``. The parser is operator-precedence ("shunting-yard")
with explicit stacks, and every walk over the tree is a loop, so nesting depth is limited by
memory only: ``"(" * 100_000 + "x" + ")" * 100_000`` parses, and nothing here can raise
RecursionError. Every mistake raises ``ExpressionError`` naming the position (counted from 0, as
Python's ``re`` does) and showing it with a caret.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping

from .engine import Value

__all__ = ["FUNCTIONS", "Binary", "Call", "ExpressionError", "Name", "Neg", "Node", "Num",
           "build_expression", "parse_expression"]

# Each function is a Value method; sqrt and abs are compositions in the engine (x**0.5, relu sums).
FUNCTIONS: dict[str, Callable[[Value], Value]] = {
    "abs": abs,
    "exp": Value.exp,
    "log": Value.log,
    "relu": Value.relu,
    "sigmoid": Value.sigmoid,
    "sqrt": Value.sqrt,
    "tanh": Value.tanh,
}

# Binding strength of each operator: (precedence, right-associative).
_BINARY = {"+": (1, False), "-": (1, False), "*": (2, False), "/": (2, False), "**": (4, True)}
_OPERATORS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv, "**": operator.pow}
_NEG_PRECEDENCE = 3
_ATOM_PRECEDENCE = 5

_SHOWN_AROUND = 30          # characters of context each side of the caret in an error message


class ExpressionError(ValueError):
    """A mistake in an expression. ``.position`` is the 0-based index of the problem in ``.text``;
    ``.message`` is the one-line description; ``str()`` adds the text with a caret under it.

    >>> try:
    ...     parse_expression("tanh(x))")
    ... except ExpressionError as exc:
    ...     error = exc
    >>> print(error)
    unexpected ')' at position 7
      tanh(x))
             ^
    >>> error.position, error.message
    (7, "unexpected ')' at position 7")
    """

    def __init__(self, message: str, position: int, text: str = ""):
        self.message = message
        self.position = position
        self.text = text
        super().__init__(message)

    def __str__(self) -> str:
        if not self.text:
            return self.message
        # Long texts are cut to a window around the problem, so the message stays readable.
        start = max(0, self.position - _SHOWN_AROUND)
        end = min(len(self.text), self.position + _SHOWN_AROUND)
        shown = self.text[start:end].replace("\t", " ").replace("\n", " ").replace("\r", " ")
        caret = self.position - start
        if start > 0:
            shown, caret = "..." + shown, caret + 3
        if end < len(self.text):
            shown += "..."
        return f"{self.message}\n  {shown}\n  {' ' * caret}^"


# --- The tree ------------------------------------------------------------------------------------

class Node:
    """Base of the expression tree. ``str(node)`` writes it back as text with the fewest
    parentheses; equality compares structure (not positions). Both walk with a loop, so even a tree
    100,000 levels deep can be printed and compared."""

    __slots__ = ()

    def children(self) -> tuple["Node", ...]:
        return ()

    def _fields(self) -> tuple:
        # The non-child fields that equality compares.
        return ()

    def __eq__(self, other) -> bool:
        pairs = [(self, other)]
        while pairs:
            a, b = pairs.pop()
            if type(a) is not type(b) or a._fields() != b._fields():
                return False
            pairs.extend(zip(a.children(), b.children()))
        return True

    __hash__ = None

    def __str__(self) -> str:
        return _unparse(self)

    def __repr__(self) -> str:
        return f"parse_expression({str(self)!r})"


@dataclass(eq=False, repr=False, slots=True)
class Num(Node):
    """A number literal; ``text`` is how it was written (a folded ``-3`` keeps its minus)."""
    value: float
    text: str
    position: int = 0

    def _fields(self) -> tuple:
        return (self.value,)


@dataclass(eq=False, repr=False, slots=True)
class Name(Node):
    """A variable: becomes one leaf Value, however often it appears."""
    name: str
    position: int = 0

    def _fields(self) -> tuple:
        return (self.name,)


@dataclass(eq=False, repr=False, slots=True)
class Neg(Node):
    """Unary minus."""
    operand: Node
    position: int = 0

    def children(self) -> tuple[Node, ...]:
        return (self.operand,)


@dataclass(eq=False, repr=False, slots=True)
class Binary(Node):
    """``left op right`` for op in ``+ - * / **``."""
    op: str
    left: Node
    right: Node
    position: int = 0

    def children(self) -> tuple[Node, ...]:
        return (self.left, self.right)

    def _fields(self) -> tuple:
        return (self.op,)


@dataclass(eq=False, repr=False, slots=True)
class Call(Node):
    """``func(arg)`` for func in ``FUNCTIONS``."""
    func: str
    arg: Node
    position: int = 0

    def children(self) -> tuple[Node, ...]:
        return (self.arg,)

    def _fields(self) -> tuple:
        return (self.func,)


def _postorder(root: Node) -> Iterator[Node]:
    """Every node after its children, without recursion."""
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if children_done:
            yield node
            continue
        stack.append((node, True))
        for child in reversed(node.children()):
            stack.append((child, False))


def _precedence(node: Node) -> int:
    if isinstance(node, Binary):
        return _BINARY[node.op][0]
    if isinstance(node, Neg) or (isinstance(node, Num) and node.text.startswith("-")):
        return _NEG_PRECEDENCE
    return _ATOM_PRECEDENCE


def _layout(node: Node) -> list:
    """How one node is written: strings, and child nodes in their places, with the fewest
    parentheses that keep the tree's grouping."""
    if isinstance(node, Num):
        return [node.text]
    if isinstance(node, Name):
        return [node.name]
    if isinstance(node, Call):
        return [node.func + "(", node.arg, ")"]
    if isinstance(node, Neg):
        # A neg inside a neg still reads right without parentheses: --x.
        if _precedence(node.operand) >= _NEG_PRECEDENCE:
            return ["-", node.operand]
        return ["-(", node.operand, ")"]
    prec, right_assoc = _BINARY[node.op]
    lp, rp = _precedence(node.left), _precedence(node.right)
    # The side an operator groups towards may hold the same precedence bare; the other side needs
    # parentheses. A negative base of ** always does ((-2)**2, not -2**2); a negative exponent
    # never does (2**-x).
    wrap_left = lp < prec or (lp == prec and right_assoc) or (node.op == "**" and lp == _NEG_PRECEDENCE)
    wrap_right = (rp < prec or (rp == prec and not right_assoc)) and not (
        node.op == "**" and rp == _NEG_PRECEDENCE)
    sep = " " if prec == 1 else ""
    return ([*(["(", node.left, ")"] if wrap_left else [node.left]), f"{sep}{node.op}{sep}",
             *(["(", node.right, ")"] if wrap_right else [node.right])])


def _unparse(root: Node) -> str:
    """The text of ``root``, written left to right from an explicit stack (linear time)."""
    out: list[str] = []
    stack: list = [root]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
        else:
            stack.extend(reversed(_layout(item)))
    return "".join(out)


def _short_texts(root: Node, limit: int) -> dict[int, str]:
    """``{id(node): text}`` for every subtree whose text fits in ``limit`` characters. A subtree
    over the limit has no text, nor do its ancestors, so labelling a huge expression stays linear."""
    texts: dict[int, str] = {}
    for node in _postorder(root):
        pieces = []
        for piece in _layout(node):
            if not isinstance(piece, str):
                piece = texts.get(id(piece))
                if piece is None:
                    break
            pieces.append(piece)
        else:
            text = "".join(pieces)
            if len(text) <= limit:
                texts[id(node)] = text
    return texts


# --- Tokens --------------------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<space>[ \t\r\n]+)
  | (?P<number>(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]*)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\*\*|[-+*/(),])
""", re.VERBOSE)


def _tokens(text: str) -> Iterator[tuple[str, str, int]]:
    """Yield ``(kind, text, position)``; kind is number, name or the operator itself; then end."""
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ExpressionError(f"unexpected character {text[pos]!r} at position {pos}", pos, text)
        kind, token = match.lastgroup, match.group()
        if kind == "number" and token[-1] in "eE+-":
            raise ExpressionError(f"malformed number {token!r} at position {pos} (an exponent needs "
                                  "digits, e.g. 1e-3)", pos, text)
        if kind != "space":
            yield (token if kind == "op" else kind), token, pos
        pos = match.end()
    yield "end", "", len(text)


def _describe(kind: str, token: str) -> str:
    if kind == "end":
        return "the end"
    return f"{kind} {token!r}" if kind in ("number", "name") else repr(token)


# --- Parsing -------------------------------------------------------------------------------------

def parse_expression(text: str) -> Node:
    """Parse ``text`` into a tree of ``Num``, ``Name``, ``Neg``, ``Binary`` and ``Call`` nodes.

    >>> tree = parse_expression("-x**2 + tanh(2*y)")
    >>> tree
    parse_expression('-x**2 + tanh(2*y)')
    >>> tree.op, tree.left
    ('+', parse_expression('-x**2'))
    >>> parse_expression("(a - b) - c") == parse_expression("a - b - c")
    True
    >>> parse_expression("2 ** 3 ** 2")
    parse_expression('2**3**2')
    >>> parse_expression("(2 ** 3) ** 2")
    parse_expression('(2**3)**2')
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_expression needs a str, got {type(text).__name__}")
    output: list[Node] = []
    # Pending operators: ("bin", op, pos), ("neg", "-", pos), ("(", "", pos), ("call", func, pos).
    pending: list[tuple[str, str, int]] = []
    expect_operand = True
    tokens = _tokens(text)

    def reduce_one() -> None:
        kind, op, pos = pending.pop()
        if kind == "neg":
            operand = output.pop()
            if isinstance(operand, Num) and not operand.text.startswith("-"):
                # A minus on a literal is the negative number itself: -3 is one constant.
                output.append(Num(-operand.value, "-" + operand.text, pos))
            else:
                output.append(Neg(operand, pos))
        else:
            right = output.pop()
            output.append(Binary(op, output.pop(), right, pos))

    def reduce_while_binding(at_least: int) -> None:
        while pending and pending[-1][0] in ("bin", "neg"):
            kind, op, _ = pending[-1]
            prec = _NEG_PRECEDENCE if kind == "neg" else _BINARY[op][0]
            if prec < at_least:
                break
            reduce_one()

    for kind, token, pos in tokens:
        if expect_operand:
            if kind == "number":
                value = float(token)
                if not math.isfinite(value):
                    raise ExpressionError(f"number {token[:20]!r} at position {pos} is too large for "
                                          "a float", pos, text)
                output.append(Num(value, token, pos))
                expect_operand = False
                continue
            if kind == "name":
                following = next(tokens)
                is_call = following[0] == "("
                if token in FUNCTIONS and not is_call:
                    raise ExpressionError(f"{token!r} at position {pos} is a function: write "
                                          f"{token}(...)", pos, text)
                if is_call:
                    if token not in FUNCTIONS:
                        raise ExpressionError(f"unknown function {token!r} at position {pos}; the "
                                              f"functions are {', '.join(FUNCTIONS)}", pos, text)
                    pending.append(("call", token, pos))
                    continue
                output.append(Name(token, pos))
                expect_operand = False
                # The token after the name is already read: handle it as the operator it must be.
                kind, token, pos = following
            elif kind == "-":
                pending.append(("neg", "-", pos))
                continue
            elif kind == "(":
                pending.append(("(", "", pos))
                continue
            elif kind == "end":
                if not text.strip():
                    raise ExpressionError("empty expression", pos, text)
                raise ExpressionError(f"unexpected end of expression at position {pos}: expected "
                                      "a number, a name or '('", pos, text)
            else:
                raise ExpressionError(f"unexpected {_describe(kind, token)} at position {pos}: "
                                      "expected a number, a name, '-' or '('", pos, text)

        # Here an operand has just ended; ``kind`` must continue or close the expression.
        if kind in _BINARY:
            prec, right_assoc = _BINARY[kind]
            reduce_while_binding(prec + 1 if right_assoc else prec)
            pending.append(("bin", kind, pos))
            expect_operand = True
        elif kind == ")":
            reduce_while_binding(0)
            if not pending:
                raise ExpressionError(f"unexpected ')' at position {pos}", pos, text)
            opener, func, open_pos = pending.pop()
            if opener == "call":
                output.append(Call(func, output.pop(), open_pos))
        elif kind == ",":
            reduce_while_binding(0)
            if pending and pending[-1][0] == "call":
                func = pending[-1][1]
                raise ExpressionError(f"{func}() takes exactly one argument (found ',' at position "
                                      f"{pos})", pos, text)
            raise ExpressionError(f"unexpected ',' at position {pos}", pos, text)
        elif kind == "end":
            reduce_while_binding(0)
            if pending:
                _, func, open_pos = pending[-1]
                what = f"{func}(" if func else "("
                raise ExpressionError(f"missing ')': the {what!r} at position {open_pos} is never "
                                      "closed", open_pos, text)
            return output.pop()
        else:
            hint = " (write * to multiply)" if kind in ("number", "name", "(") else ""
            raise ExpressionError(f"unexpected {_describe(kind, token)} at position {pos}: "
                                  f"expected an operator{hint}", pos, text)
    raise AssertionError("unreachable: the token stream always ends with 'end'")  # pragma: no cover


# --- Building Values -----------------------------------------------------------------------------

_LABEL_LIMIT = 24           # interior nodes whose text is longer than this stay unlabelled


def build_expression(text: str, values: Mapping[str, float | Value], *,
                     backward: bool = False) -> tuple[Value, dict[str, Value]]:
    """Parse ``text`` and compute it with Values; returns ``(root, leaves)``.

    ``backward=True`` also runs ``root.backward()``. A math error, while computing or while
    backpropagating, raises ``ExpressionError`` naming the op as written in ``text`` and its
    position (``sqrt at position 4: ...``), whichever engine ops that op is made of.

    ``leaves`` maps each name the expression uses, in order of first appearance, to its one leaf
    Value (``label`` = the name; a name used twice is one Value, so its gradients add up). A value
    given as a Value is used as that leaf itself. Interior nodes are labelled with their short
    sub-expression (``x1*w1``), the root with ``out`` unless it is a leaf.

    >>> root, leaves = build_expression("tanh(x1*w1 + x2*w2 + b)",
    ...                                 {"x1": 2, "x2": 0, "w1": -3, "w2": 1, "b": 6.8813735870195432})
    >>> root.backward()
    >>> round(root.data, 4), root.label, [(k, round(v.grad, 4)) for k, v in leaves.items()]
    (0.7071, 'out', [('x1', -1.5), ('w1', 1.0), ('x2', 0.5), ('w2', 0.0), ('b', 0.5)])
    >>> build_expression("x * y", {"x": 1})
    Traceback (most recent call last):
    ...
    chainrule.expr.ExpressionError: no value for 'y' at position 4
      x * y
          ^
    """
    tree = parse_expression(text)
    nodes = list(_postorder(tree))

    missing: dict[str, int] = {}
    for node in nodes:
        if isinstance(node, Name) and node.name not in values and node.name not in missing:
            missing[node.name] = node.position
    if missing:
        first = min(missing.values())
        if len(missing) == 1:
            message = f"no value for {next(iter(missing))!r} at position {first}"
        else:
            message = f"no values for {', '.join(map(repr, missing))} (first at position {first})"
        raise ExpressionError(message, first, text)

    leaves: dict[str, Value] = {}
    for node in sorted((n for n in nodes if isinstance(n, Name)), key=lambda n: n.position):
        if node.name not in leaves:
            given = values[node.name]
            leaves[node.name] = given if isinstance(given, Value) else Value(given, label=node.name)

    labels = _short_texts(tree, _LABEL_LIMIT)
    results: dict[int, Value] = {}
    made_by: dict[Value, Node] = {}       # every engine node -> the expression node it computes part of
    for node in nodes:
        try:
            result = _compute(node, results, leaves)
        except (ArithmeticError, ValueError) as exc:
            raise _math_error(exc, node, text) from None
        if not isinstance(node, (Name, Num)):
            result.label = labels.get(id(node), "")
        _claim(result, node, made_by)
        results[id(node)] = result
    root = results[id(tree)]
    if not isinstance(tree, Name):
        root.label = "out"
    if backward:
        _backward(root, made_by, text)
    return root, leaves


def _op_text(node: Node) -> str:
    """The op as the user wrote it: ``sqrt``, ``'/'``, ``'-'``."""
    if isinstance(node, Call):
        return node.func
    if isinstance(node, Binary):
        return repr(node.op)
    if isinstance(node, Neg):
        return "'-'"
    return "the number" if isinstance(node, Num) else f"name {getattr(node, 'name', '')!r}"


def _math_error(exc: Exception, node: Node, text: str) -> ExpressionError:
    # The engine's message gives the numbers; say which op of the text it was, and where.
    return ExpressionError(f"{_op_text(node)} at position {node.position}: {exc}", node.position, text)


def _claim(result: Value, node: Node, made_by: dict) -> None:
    """Mark the engine nodes that computing ``node`` created (one op can be several: ``a - b``)."""
    stack = [result]
    while stack:
        value = stack.pop()
        if value in made_by or not value._prev:
            continue
        made_by[value] = node
        stack.extend(value._prev)


def _backward(root: Value, made_by: dict, text: str) -> None:
    """``root.backward()``, with a math error traced to the op of the text whose step failed."""
    from .engine import topological_order

    pending = [v for v in reversed(topological_order(root)) if v._prev]
    done = iter(range(len(pending)))
    position = [0]

    def on_step(value: Value) -> None:
        if value._prev:
            position[0] = next(done) + 1

    try:
        root.backward(on_step=on_step)
    except (ArithmeticError, ValueError) as exc:
        failed = pending[position[0]] if position[0] < len(pending) else root
        node = made_by.get(failed)
        if node is None:
            raise
        raise _math_error(exc, node, text) from None


def _compute(node: Node, results: dict[int, Value], leaves: dict[str, Value]) -> Value:
    if isinstance(node, Num):
        return Value(node.value)
    if isinstance(node, Name):
        return leaves[node.name]
    if isinstance(node, Neg):
        return -results[id(node.operand)]
    if isinstance(node, Call):
        return FUNCTIONS[node.func](results[id(node.arg)])
    # A literal exponent stays a constant parameter (x**2 draws as one "**2" node, as in the
    # lecture); any other operand is a Value, which receives a gradient.
    right = node.right.value if node.op == "**" and isinstance(node.right, Num) else results[id(node.right)]
    return _OPERATORS[node.op](results[id(node.left)], right)
