"""What a page may ask of ``chainrule live``, and the checks every request's values pass.

The page is a remote control: its numbers are checked here, on the server, whatever the page's own
inputs allow. A refused value raises :class:`LiveError`, whose message says what was wrong and what
is allowed; the trainer answers it to the page and changes nothing.

>>> check_action({"action": "set", "lr": 0.1})
'set'
>>> check_action({"action": "play", "lr": 1})
Traceback (most recent call last):
chainrule.liveview.controls.LiveError: play takes no values, not 'lr'
"""

from __future__ import annotations

import math
import numbers

from ..nn import ACTIVATIONS

__all__ = ["ACTIONS", "LIMITS", "LiveError", "check_action", "check_setting", "real", "whole"]

# Bounds on every value a page may send: the page is a remote control, and its numbers are
# checked here, on the server, whatever the page's own inputs allow.
LIMITS = {
    "width": 32,        # neurons per hidden layer: every neuron is drawn
    "layers": 4,        # hidden layers
    "points": 500,      # data points, train and test together
    "speed": 1000,      # training steps per second asked for
    "lr": 100.0,        # the largest learning rate
    "coordinate": 1e3,  # |x| and |y| of an added point
}


class LiveError(ValueError):
    """A command the trainer refuses; the message says what was wrong and what is allowed."""

# Each action and the values it takes.
ACTIONS = {"play": (), "pause": (), "step": (), "reset": (), "walk": (), "walk_finish": (), "walk_cancel": (),
           "select": ("index",), "remove_point": ("index",), "add_point": ("x", "y", "label"),
           "expand": ("layer", "neuron"), "set": ("lr", "batch_size", "speed", "hidden", "activation")}


def check_action(body: dict) -> str:
    """The action a command names, once it is known and carries only that action's values."""
    action = body.get("action")
    if action not in ACTIONS:
        raise LiveError(f"unknown action {str(action)[:40]!r}; the actions are: {', '.join(ACTIONS)}")
    extra = [key for key in body if key != "action" and key not in ACTIONS[action]]
    if extra:
        raise LiveError(f"{action} takes {', '.join(ACTIONS[action]) or 'no values'}, not {str(extra[0])[:40]!r}")
    return action


def check_setting(key: str, value):
    """``value`` checked for the setting ``key`` (lr, batch_size, speed, activation, hidden), or LiveError.

    >>> check_setting("hidden", "8, 8"), check_setting("speed", "30")
    ([8, 8], 30)
    >>> check_setting("hidden", "10000")
    Traceback (most recent call last):
    chainrule.liveview.controls.LiveError: hidden: each layer has 1 to 32 neurons here (every neuron is drawn), got 10000
    """
    if key == "lr":
        number = real(key, value)
        if not 0 < number <= LIMITS["lr"]:
            raise LiveError(f"lr must be > 0 and at most {LIMITS['lr']:g}, got {number:g}")
        return number
    if key == "batch_size":
        number = whole(key, value)
        if not 0 <= number <= LIMITS["points"]:
            raise LiveError(f"batch_size must be 0 (all the points) or up to {LIMITS['points']}, got {number}")
        return number
    if key == "speed":
        number = whole(key, value)
        if not 1 <= number <= LIMITS["speed"]:
            raise LiveError(f"speed must be 1 to {LIMITS['speed']} steps per second, got {number}")
        return number
    if key == "activation":
        if value not in ACTIVATIONS:
            raise LiveError(f"unknown activation {str(value)[:40]!r}; choose one of: {', '.join(ACTIVATIONS)}")
        return value
    # hidden: "8,8", [8, 8] or "" for none
    parts = value if isinstance(value, list) else str(value)[:200].replace(" ", "").split(",")
    parts = [p for p in parts if p != ""]
    if len(parts) > LIMITS["layers"]:
        raise LiveError(f"hidden: at most {LIMITS['layers']} hidden layers here, got {len(parts)}")
    widths = [whole("hidden", p) for p in parts]
    for width in widths:
        if not 1 <= width <= LIMITS["width"]:
            raise LiveError(f"hidden: each layer has 1 to {LIMITS['width']} neurons here (every neuron is "
                            f"drawn), got {width}")
    return widths


def real(key: str, value) -> float:
    """A finite number from a JSON number or text, else LiveError naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        raise LiveError(f"{key} must be a number, got {type(value).__name__}")
    try:
        number = float(value[:40] if isinstance(value, str) else value)
    except ValueError:
        raise LiveError(f"{key} must be a number, got {str(value)[:40]!r}") from None
    if not math.isfinite(number):
        raise LiveError(f"{key} must be a finite number, got {number}")
    return number


def whole(key: str, value) -> int:
    """A whole number from a JSON number or text, else LiveError naming ``key``."""
    number = real(key, value)
    if not number.is_integer():
        raise LiveError(f"{key} must be a whole number, got {number:g}")
    return int(number)
