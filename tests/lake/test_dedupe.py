"""lake.dedupe.content_keys: equal tick content, equal keys; any difference, other keys."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from lake.dedupe import content_keys, merge_ticks
from lake.schema import LAKE_SCHEMA, TICK_SCHEMA
from tests.kit.ticks import ticks
from tests.kit.times import T0


def same(a: pa.Table, b: pa.Table) -> bool:
    (a0, a1), (b0, b1) = content_keys(a), content_keys(b)
    return bool(a0[0] == b0[0] and a1[0] == b1[0])


def test_seq_and_receive_time_do_not_count() -> None:
    one = ticks("AAPL", [T0], [1], received_at=[T0 * 1000])
    other = ticks("AAPL", [T0], [9], received_at=[T0 * 1000 + 77])
    assert same(one, other)


@pytest.mark.parametrize("name", [f.name for f in TICK_SCHEMA if f.name != "id"])
def test_a_difference_in_any_tick_column_changes_the_keys(name: str) -> None:
    base = ticks("AAPL", [T0], [1])
    kind = LAKE_SCHEMA.field(name).type
    value = {pa.string(): "x", pa.float32(): 1.5, pa.float64(): 2.5}.get(kind, 7)
    if pa.types.is_list(kind):
        value = ["x"]
    if name == "time":
        changed = ticks("AAPL", [T0 + 1], [1])
    else:
        column = pa.array([value], kind)
        changed = base.set_column(base.schema.get_field_index(name), name, column)
    assert not same(base, changed), f"NULL and a value of {name} must differ"


def test_floats_compare_bit_for_bit() -> None:
    zero, negative_zero = ticks("A", [T0], [1], [0.0]), ticks("A", [T0], [2], [-0.0])
    nan, nan_again = ticks("A", [T0], [1], [float("nan")]), ticks("A", [T0], [2], [float("nan")])
    assert not same(zero, negative_zero)
    assert same(nan, nan_again)


def test_keys_agree_with_the_merge_rule_on_random_ticks() -> None:
    rng = np.random.default_rng(5)
    n = 2_000
    table = ticks(
        None,
        T0 + rng.integers(0, 3, n) * 1000,
        np.arange(1, n + 1),
        rng.choice([1.0, 1.5, float("nan")], n),
        id=rng.choice(["AAPL", "MSFT"], n),
        day_volume=rng.choice([10, 11], n),
    )
    first, second = content_keys(table)
    distinct_keys = len({(int(a), int(b)) for a, b in zip(first, second, strict=True)})
    merged, _ = merge_ticks(LAKE_SCHEMA.empty_table(), table)
    assert distinct_keys == merged.num_rows < n


LISTS = [None, [], [""], ["a", "b"], ["ab"], ["a\x1fb"], ["a", "\x1fb"], ["b", "a"], ["a\\", "b"]]


def test_lists_are_equal_element_by_element_in_keys_and_in_the_merge() -> None:
    """``indices`` (a list column): every list here differs from every other, and equal
    lists are the same tick, in ``content_keys`` and in ``merge_ticks`` alike; a sliced
    table (as a batch is, after a filter) keys the same."""
    n = len(LISTS)
    table = ticks("AAPL", [T0] * 2 * n, range(1, 2 * n + 1), indices=LISTS + LISTS)
    first, second = content_keys(table)
    keys = list(zip(first.tolist(), second.tolist(), strict=True))
    assert len(set(keys[:n])) == n and keys[:n] == keys[n:]
    sliced = content_keys(table.slice(n))
    assert list(zip(sliced[0].tolist(), sliced[1].tolist(), strict=True)) == keys[n:]
    merged, kept_new = merge_ticks(LAKE_SCHEMA.empty_table(), table)
    assert kept_new == merged.num_rows == n
    assert merged["seq"].to_pylist() == list(range(1, n + 1))  # the lowest seq of each
    assert merged["indices"].to_pylist() == LISTS
