"""Analytics reads sealed windows from the lake and owns the DuckDB features database."""
