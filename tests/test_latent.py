"""styleserve.latent against the official conventions (seed -> z, one-hot labels, w_avg.lerp)."""

from __future__ import annotations

import numpy as np
import pytest

from styleserve.errors import InvalidArgument
from styleserve.latent import (
    SEED_MAX,
    broadcast_ws,
    check_psi,
    class_labels,
    mix_styles,
    noise_from_seed,
    truncate,
    z_from_seed,
    z_from_seeds,
)

# ----------------------------------------------------------------------------
# seed -> z


@pytest.mark.parametrize("z_dim", [1, 16, 512])
@pytest.mark.parametrize("seed", [0, 1, 42, 123456, SEED_MAX])
def test_z_from_seed_is_the_official_stream(seed: int, z_dim: int) -> None:
    z = z_from_seed(seed, z_dim)
    expected = np.random.RandomState(seed).randn(z_dim).astype(np.float32)
    assert z.dtype == np.float32 and z.shape == (z_dim,)
    np.testing.assert_array_equal(z, expected)
    # gen_images.py draws randn(1, z_dim): the same numbers.
    np.testing.assert_array_equal(z, np.random.RandomState(seed).randn(1, z_dim)[0].astype(np.float32))


def test_z_from_seed_accepts_numpy_integers() -> None:
    np.testing.assert_array_equal(z_from_seed(np.int64(7), 8), z_from_seed(7, 8))


@pytest.mark.parametrize("seed", [-1, SEED_MAX + 1, 1.5, "3", True, None])
def test_z_from_seed_rejects_bad_seeds(seed: object) -> None:
    with pytest.raises(InvalidArgument) as exc:
        z_from_seed(seed, 4)  # type: ignore[arg-type]
    assert exc.value.field == "seed"


def test_z_from_seeds_stacks_and_names_the_bad_entry() -> None:
    zs = z_from_seeds([3, 0, 3], 10)
    assert zs.shape == (3, 10) and zs.dtype == np.float32
    for row, seed in zip(zs, [3, 0, 3], strict=True):
        np.testing.assert_array_equal(row, np.random.RandomState(seed).randn(10).astype(np.float32))
    assert z_from_seeds([], 10).shape == (0, 10)
    with pytest.raises(InvalidArgument) as exc:
        z_from_seeds([1, -5], 10)
    assert exc.value.field == "seeds[1]"


# ----------------------------------------------------------------------------
# class labels


def test_class_labels_one_hot() -> None:
    c = class_labels([2, 0, 2], 4)
    assert c.dtype == np.float32
    np.testing.assert_array_equal(c, np.eye(4, dtype=np.float32)[[2, 0, 2]])
    assert class_labels([None, None], 0).shape == (2, 0)
    assert class_labels([np.int64(3)], 4)[0, 3] == 1.0


@pytest.mark.parametrize(
    ("indices", "c_dim", "field", "needle"),
    [
        ([0, None], 3, "class_index[1]", "conditional"),
        ([None, 1], 0, "class_index[1]", "unconditional"),
        ([3], 3, "class_index[0]", "unknown class"),
        ([1, -1], 3, "class_index[1]", "unknown class"),
        ([True], 3, "class_index[0]", "unknown class"),
    ],
)
def test_class_labels_errors(indices: list[int | None], c_dim: int, field: str, needle: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        class_labels(indices, c_dim)
    assert exc.value.field == field
    assert needle in exc.value.message


# ----------------------------------------------------------------------------
# truncation


def _torch_truncate(ws: np.ndarray, w_avg: np.ndarray, psi: float, cutoff: int | None) -> np.ndarray:
    """The official MappingNetwork truncation, verbatim semantics, in torch fp32."""
    torch = pytest.importorskip("torch")
    x = torch.from_numpy(ws.copy())
    avg = torch.from_numpy(w_avg)
    if psi != 1:
        if cutoff is None:
            x = avg.lerp(x, psi)
        else:
            x[:, :cutoff] = avg.lerp(x[:, :cutoff], psi)
    return x.numpy()


@pytest.mark.parametrize("cutoff", [None, 0, 1, 3, 8, 20])
@pytest.mark.parametrize("psi", [1.0, 0.7, 0.5, 0.0, -0.6, 1.8])
def test_truncate_matches_torch_lerp(psi: float, cutoff: int | None) -> None:
    rs = np.random.RandomState(0)
    ws = (3 * rs.randn(3, 8, 16)).astype(np.float32)
    w_avg = rs.randn(16).astype(np.float32)
    before = ws.copy()
    out = truncate(ws, w_avg, psi, cutoff)
    np.testing.assert_allclose(out, _torch_truncate(ws, w_avg, psi, cutoff), rtol=0, atol=2e-6)
    assert out.dtype == np.float32 and out.shape == ws.shape
    np.testing.assert_array_equal(ws, before)  # input untouched
    stop = 8 if cutoff is None else min(cutoff, 8)
    np.testing.assert_array_equal(out[:, stop:], ws[:, stop:])  # layers >= cutoff untouched


def test_truncate_per_row_psi() -> None:
    rs = np.random.RandomState(1)
    ws = rs.randn(3, 6, 8).astype(np.float32)
    w_avg = rs.randn(8).astype(np.float32)
    psis = np.array([0.5, 1.0, -0.3], dtype=np.float32)
    out = truncate(ws, w_avg, psis, cutoff=4)
    for i, psi in enumerate(psis):
        row = _torch_truncate(ws[i : i + 1], w_avg, float(psi), 4)
        np.testing.assert_allclose(out[i : i + 1], row, rtol=0, atol=2e-6)


def test_truncate_psi_one_is_identity_and_zero_is_w_avg() -> None:
    rs = np.random.RandomState(2)
    ws = rs.randn(2, 5, 4).astype(np.float32)
    w_avg = rs.randn(4).astype(np.float32)
    # Official code skips truncation when psi == 1; the closed form differs by at most an ulp.
    np.testing.assert_allclose(truncate(ws, w_avg, 1.0), ws, rtol=0, atol=1e-6)
    np.testing.assert_allclose(truncate(ws, w_avg, 0.0), np.broadcast_to(w_avg, ws.shape), atol=1e-7)


def test_truncate_rejects_non_3d() -> None:
    with pytest.raises(ValueError):
        truncate(np.zeros((2, 4), np.float32), np.zeros(4, np.float32), 0.5)


@pytest.mark.parametrize("psi", [float("nan"), float("inf"), -float("inf"), 100.5, -1e9])
def test_check_psi_rejects(psi: float) -> None:
    with pytest.raises(InvalidArgument) as exc:
        check_psi(psi)
    assert exc.value.field == "truncation_psi"


@pytest.mark.parametrize("psi", [-1.0, 0.0, 0.7, 1.0, 2.0, 100.0])
def test_check_psi_accepts(psi: float) -> None:
    assert check_psi(psi) == psi


# ----------------------------------------------------------------------------
# broadcast, mixing, noise


def test_broadcast_and_mix() -> None:
    rs = np.random.RandomState(3)
    w = rs.randn(2, 5).astype(np.float32)
    ws = broadcast_ws(w, 7)
    assert ws.shape == (2, 7, 5)
    np.testing.assert_array_equal(ws[:, 4], w)
    other = rs.randn(2, 7, 5).astype(np.float32)
    mixed = mix_styles(ws, other, [0, 3])
    np.testing.assert_array_equal(mixed[:, [0, 3]], other[:, [0, 3]])
    np.testing.assert_array_equal(mixed[:, [1, 2, 4, 5, 6]], ws[:, [1, 2, 4, 5, 6]])
    np.testing.assert_array_equal(ws[:, 0], w)  # base untouched


def test_noise_from_seed_is_one_stream_in_layer_order() -> None:
    planes = noise_from_seed(9, [4, 8, 8])
    assert [p.shape for p in planes] == [(1, 1, 4, 4), (1, 1, 8, 8), (1, 1, 8, 8)]
    assert all(p.dtype == np.float32 for p in planes)
    rs = np.random.RandomState(9)
    for p, res in zip(planes, [4, 8, 8], strict=True):
        np.testing.assert_array_equal(p[0, 0], rs.randn(res, res).astype(np.float32))
    with pytest.raises(InvalidArgument):
        noise_from_seed(-1, [4])
