"""ticklake: Yahoo! Finance's live stream into a Parquet lake and one-minute features in DuckDB."""

__version__ = "0.1.0"
