"""ticklake: Yahoo! Finance's live stream into a Parquet lake and one-minute features in DuckDB.

From Python (:mod:`ticklake.api`)::

    import ticklake
    lake = ticklake.open("data")
    lake.features(tickers=["AAPL"], start="2024-04-15", end="2024-04-16")  # pyarrow.Table

``import ticklake`` stays cheap: the API, and DuckDB and pyarrow with it, load on first use
of one of its names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ticklake.api import Lake, open, to_pandas, to_polars

__version__ = "0.1.0"
__all__ = ["Lake", "__version__", "open", "to_pandas", "to_polars"]

_API = frozenset({"Lake", "open", "to_pandas", "to_polars"})


def __getattr__(name: str) -> Any:
    if name in _API:
        from ticklake import api

        return getattr(api, name)
    raise AttributeError(f"module 'ticklake' has no attribute {name!r}")
