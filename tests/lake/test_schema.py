"""lake.schema: the columns the proto gives, and rows of older files read as today's."""

from __future__ import annotations

import logging

import pyarrow as pa
import pytest

from lake.schema import FIELD_BY_NAME, LAKE_SCHEMA, LEGACY_COLUMNS, stored_columns, upgrade
from tests.kit.ticks import ticks
from tests.kit.times import T0


def legacy(table: pa.Table, **placeholders: list[int | None]) -> pa.Table:
    """``table`` as a file before issue 16 held it: fields 35-45 as int64 placeholders."""
    named = [f.name for f in FIELD_BY_NAME.values() if 35 <= f.number <= 45]
    table = table.drop_columns(named)
    for column in LEGACY_COLUMNS:
        values = placeholders.get(column, [None] * table.num_rows)
        table = table.append_column(column, pa.array(values, pa.int64()))
    return table


def test_fields_35_to_45_are_columns_of_their_own_types() -> None:
    assert LAKE_SCHEMA.field("indices").type.equals(pa.list_(pa.string()))
    assert FIELD_BY_NAME["indices"].kind == "strings"
    assert LAKE_SCHEMA.field("cmc_rank").type == pa.int64()
    assert LAKE_SCHEMA.field("fifty_two_week_change").type == pa.float32()
    assert LAKE_SCHEMA.field("latest_share_class").type == pa.string()
    assert not any(name.startswith("field_") for name in LAKE_SCHEMA.names)


def test_upgrade_reads_placeholders_36_and_41_and_drops_the_others_loudly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    today = ticks("AAPL", [T0, T0 + 1], [1, 2])
    old = legacy(today, field_36=[4, None], field_41=[None, 9], field_38=[None, 1])
    with caplog.at_level(logging.WARNING, logger="lake.schema"):
        up = upgrade(old)
    assert up.schema.equals(LAKE_SCHEMA)
    assert up["cmc_rank"].to_pylist() == [4, None]
    assert up["latest_funding_date"].to_pylist() == [None, 9]
    assert up["indices"].to_pylist() == [None, None]
    assert up.drop_columns(["cmc_rank", "latest_funding_date"]).equals(
        today.drop_columns(["cmc_rank", "latest_funding_date"])
    )
    assert [r.getMessage() for r in caplog.records] == [
        "event=legacy_column_dropped column=field_38 rows=1"
    ]
    assert upgrade(today) is today


def test_upgrade_of_some_columns_keeps_dictionaries_and_refuses_strangers() -> None:
    old = legacy(ticks("AAPL", [T0], [1], market_hours=["REGULAR_MARKET"]), field_36=[2])
    hours = old["market_hours"].dictionary_encode()
    old = old.set_column(old.schema.get_field_index("market_hours"), "market_hours", hours)
    names = ["market_hours", "cmc_rank", "qtd_return", "seq"]
    stored = stored_columns(names, old.schema.names)
    assert stored == ["market_hours", "field_36", "seq"]
    up = upgrade(old.select(stored), names)
    assert up.column_names == names and up.to_pylist() == [
        {"market_hours": "REGULAR_MARKET", "cmc_rank": 2, "qtd_return": None, "seq": 1}
    ]
    assert pa.types.is_dictionary(up.schema.field("market_hours").type)
    with pytest.raises(ValueError, match="unknown columns \\['field_99'\\]"):
        upgrade(old.append_column("field_99", pa.array([1])))
    with pytest.raises(ValueError, match="missing columns \\['price'\\]"):
        upgrade(old.drop_columns(["price"]))
    wrong = old.set_column(old.schema.get_field_index("price"), "price", pa.array([1.0]))
    with pytest.raises(ValueError, match="column price is double, not float"):
        upgrade(wrong)
