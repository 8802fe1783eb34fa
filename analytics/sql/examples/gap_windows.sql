-- Windows the recorder was disconnected during (partly or wholly), per ticker: their
-- features may miss ticks, and the first window after a gap carries the volume traded
-- during it. gap IS NULL means no recording session is known for the window (imported).
SELECT
    ticker,
    window_start,
    tick_count,
    volume,
    count(*) OVER (PARTITION BY ticker) AS gap_windows_of_ticker
FROM features
WHERE gap
ORDER BY ticker, window_start;
