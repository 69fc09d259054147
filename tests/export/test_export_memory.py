"""The exporter's memory discipline: verification sessions without onnxruntime's arena, verification batch sizes
within a pixel budget (a 1024 px model is verified at batch 1 and 2; its export peak is measured by
bench/scale_1024.py, not here: CI stays fast)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from styleserve.export import onnx_export
from styleserve.export.onnx_export import VERIFY_BATCHES, VERIFY_PIXELS, verify_batches_for

from styleserve.manifest import ModelManifest


def test_default_batches_per_resolution() -> None:
    assert verify_batches_for(64, VERIFY_BATCHES) == (1, 3, 8)
    assert verify_batches_for(256, VERIFY_BATCHES) == (1, 3, 8)
    assert verify_batches_for(512, VERIFY_BATCHES) == (1, 2)
    assert verify_batches_for(1024, VERIFY_BATCHES) == (1, 2)
    assert verify_batches_for(1024, (3,)) == (2,)


@settings(max_examples=200, deadline=None)
@given(
    res=st.sampled_from([4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048]),
    batches=st.lists(st.integers(1, 64), min_size=1, max_size=6),
)
def test_clipped_batches_stay_within_budget(res: int, batches: list[int]) -> None:
    got = verify_batches_for(res, batches)
    cap = max(2, VERIFY_PIXELS // res**2)
    assert len(got) == len(set(got)) and got  # no duplicates, never empty
    assert all(1 <= b <= cap for b in got)
    assert all(b * res**2 <= VERIFY_PIXELS or b <= 2 for b in got)  # the budget, or the smallest dynamic check
    assert set(got) == {min(b, cap) for b in batches}
    if any(b >= 2 for b in batches):
        assert max(got) >= 2  # some batch other than the trace batch (1) still runs: the dynamic axis is checked
    if all(b * res**2 <= VERIFY_PIXELS for b in batches):
        assert list(got) == list(dict.fromkeys(batches))  # within budget: exactly what was asked


def test_verification_sessions_free_their_buffers(tiny_uncond_model: Path) -> None:
    sess = onnx_export._session(tiny_uncond_model / "synthesis.onnx")
    so = sess.get_session_options()
    assert so.enable_cpu_mem_arena is False and so.enable_mem_pattern is False


def test_export_records_the_batches_it_verified(tiny_uncond_model: Path) -> None:
    """The conftest export asks for (1, 3) at 32 px: within the budget, verified as asked, no requested_batches."""
    v = ModelManifest.load(tiny_uncond_model).verification
    assert v["batches"] == [1, 3] and "requested_batches" not in v
