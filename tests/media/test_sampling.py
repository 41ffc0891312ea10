"""The sampling rules on their own (no decoding)."""

from __future__ import annotations

import numpy as np
import pytest

from llamavid.media.sampling import Selector, fps_step, original_indices, uniform_indices, uniform_times


def run(selector, times, indices=None):
    indices = range(len(times)) if indices is None else indices
    return [i for i, t in zip(indices, times, strict=True) if selector.keep(i, t)]


@pytest.mark.parametrize(
    ("native", "fps", "step"), [(25, 1, 25), (29.97, 1, 30), (30, 1, 30), (24, 2, 12), (25, 0.3, 83), (25, 100, 1), (10, 0.01, 1000)]
)
def test_fps_step(native, fps, step):
    assert fps_step(native, fps) == step


def test_fps_step_rejects_nonsense():
    for fps in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            fps_step(25, fps)


def test_original_indices_keep_all_no_cap():
    np.testing.assert_array_equal(original_indices(3601 * 25, 25.0, 1.0), np.arange(0, 3601 * 25, 25))
    np.testing.assert_array_equal(original_indices(251, 25.0), np.arange(0, 251, 25))


def test_uniform():
    np.testing.assert_array_equal(uniform_indices(250, 10), np.arange(0, 250, 25))
    np.testing.assert_array_equal(uniform_indices(5, 10), np.arange(5))
    np.testing.assert_allclose(uniform_times(10.0, 4), [0, 2.5, 5, 7.5])


def test_index_selector_equals_original():
    selector = Selector(by_index=True, step=fps_step(25, 1))
    assert run(selector, np.arange(250) / 25) == list(range(0, 250, 25))
    assert selector.is_target(50) and not selector.is_target(51)


def test_explicit_targets_finish():
    selector = Selector(by_index=True, targets=np.array([0, 7, 9]))
    assert run(selector, np.arange(8.0)) == [0, 7]
    assert not selector.done
    assert selector.keep(9, 9.0) and selector.done
    assert selector.is_target(7) and not selector.is_target(8)


def test_time_selector_first_frame_at_or_after_each_target():
    times = [0.0, 0.4, 0.9999, 1.3, 1.35, 4.2, 4.25, 5.0]
    assert run(Selector(by_index=False, step=1.0), times) == [0, 2, 5, 7]


def test_switch_to_time():
    selector = Selector(by_index=True, step=10)
    assert selector.keep(0, 0.0)
    selector.switch_to_time(0.0, 1.0)
    assert run(selector, [0.5, 1.2, 1.9, 2.0], indices=[1, 2, 3, 4]) == [2, 4]
