-- The latest one-minute bar of every ticker, newest first.
--   ticklake sql --file sql/examples/latest_bar.sql
SELECT
    ticker,
    window_start,
    open,
    high,
    low,
    close,
    volume,
    vwap,
    tick_count,
    late,
    gap
FROM features
QUALIFY row_number() OVER (PARTITION BY ticker ORDER BY window_start DESC) = 1
ORDER BY window_start DESC, ticker;
