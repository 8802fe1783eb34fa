-- Minutes without rows: stretches between two windows of a ticker in which no tick was
-- stored (market closed, an illiquid symbol, or the recorder down: see gap_windows.sql).
SELECT
    ticker,
    previous_end AS silent_from,
    window_start AS silent_until,
    datediff('minute', previous_end, window_start) AS minutes,
    gap AS gap_after
FROM (
    SELECT
        ticker,
        window_start,
        gap,
        lag(window_end) OVER (PARTITION BY ticker ORDER BY window_start) AS previous_end
    FROM features
)
WHERE window_start > previous_end
ORDER BY minutes DESC, ticker, silent_from;
