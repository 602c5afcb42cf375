"""What the replay tests share: comparing replayed numbers with eager (or PyTorch) ones."""

import numpy as np


def assert_close(actual, expected, rtol=1e-12):
    """Relative 1e-12, with an absolute floor of 1e-12 times the largest finite magnitude compared
    (summation order differs between eager and replay, so a sum that cancels to ~0 cannot match
    relative to itself); nan and inf must sit in the same places."""
    actual, expected = np.asarray(actual, dtype=float), np.asarray(expected, dtype=float)
    finite = expected[np.isfinite(expected)]
    scale = max(1.0, float(np.max(np.abs(finite)))) if finite.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, equal_nan=True)
