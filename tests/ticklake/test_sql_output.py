"""How ``ticklake sql`` shows a result: the aligned text table."""

from __future__ import annotations

import pyarrow as pa

from ticklake.sql_output import format_table


def test_format_table_handles_empty_results_and_booleans() -> None:
    table = pa.table({"flag": pa.array([True, None]), "name": pa.array(["a", "bb"])})
    assert format_table(table).splitlines() == [
        "flag | name",
        "-----+-----",
        "true | a",
        "NULL | bb",
    ]
    assert format_table(table.slice(0, 0)).splitlines() == ["flag | name", "-----+-----"]
