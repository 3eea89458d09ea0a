"""Tables of windows (verifier/bounds/window_tables.py): a read served from a table equals the
scattered read of the same windows, and a table never serves a tensor that changed."""

from __future__ import annotations

import pytest
import torch

from verifier.bounds.window_tables import WindowTables
from verifier.bounds.windows import Windows

SHAPE = (1, 3, 7, 6)


def _windows(rows: int, size: tuple[int, int], seed: int, tables: WindowTables | None) -> Windows:
    """Random rows with windows of ``size``, some sticking out of the map on every side."""
    gen = torch.Generator().manual_seed(seed)
    h, w = size
    origin = torch.stack([torch.randint(1 - h, SHAPE[2], (rows,), generator=gen),
                          torch.randint(1 - w, SHAPE[3], (rows,), generator=gen)], dim=1)
    patch = torch.randn(2, rows, SHAPE[1], h, w, generator=gen, dtype=torch.float64)
    return Windows(patch, origin, SHAPE, tables)


@pytest.mark.parametrize("size", [(1, 1), (3, 2), (5, 5), (9, 8)])
def test_table_reads_equal_the_scattered_reads(size: tuple[int, int]) -> None:
    tables = WindowTables()
    values = torch.randn(2, *SHAPE[1:], dtype=torch.float64)
    columns = torch.randn(2, 4, *SHAPE[1:], dtype=torch.float64)
    for seed in range(12):  # the first reads build nothing; once they add up, a table serves
        direct, served = _windows(40, size, seed, None), _windows(40, size, seed, tables)
        assert torch.equal(served.gather(values), direct.gather(values))
        assert torch.equal(served.gather_columns(columns), direct.gather_columns(columns))
        # the columns read at the windows give the dense rows' products with them
        patch = direct.patch.reshape(*direct.patch.shape[:2], -1)
        by_windows = (direct.gather_columns(columns) * patch.unsqueeze(1)).sum(dim=3)
        by_dense = torch.einsum("nrchw,nkchw->nkr", direct.dense()[:, :, 0], columns)
        assert torch.allclose(by_windows, by_dense, rtol=1e-12, atol=1e-12)
    assert tables.gather(values, SHAPE, served.origin, size) is not None


def test_a_changed_tensor_is_read_again() -> None:
    tables = WindowTables()
    values = torch.randn(1, *SHAPE[1:], dtype=torch.float64)
    rows = _windows(5, (3, 3), 0, tables)
    for _ in range(20):
        rows.gather(values)
    values.mul_(-2.0)  # in place: same storage, new version
    assert torch.equal(rows.gather(values), _windows(5, (3, 3), 0, None).gather(values))


def test_no_table_for_gradients_outside_windows_or_too_large() -> None:
    values = torch.randn(1, *SHAPE[1:], dtype=torch.float64, requires_grad=True)
    origin = torch.tensor([[0, 0], [2, 1]])
    tables = WindowTables()
    for _ in range(60):
        assert tables.gather(values, SHAPE, origin, (2, 2)) is None
    plain = values.detach()
    assert tables.gather(plain, SHAPE, torch.tensor([[-5, 0]]), (2, 2)) is None  # wholly outside
    small = WindowTables(max_entries=16)
    for _ in range(60):
        assert small.gather(plain, SHAPE, origin, (2, 2)) is None
