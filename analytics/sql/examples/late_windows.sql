-- Windows that received ticks after they were sealed (window end + lateness) and were
-- therefore recomputed; how late the latest of them arrived comes from the lake.
SELECT
    f.ticker,
    f.window_start,
    f.tick_count,
    f.computed_at,
    max(t.received_at - f.window_end) AS latest_arrival_after_end
FROM features AS f
JOIN ticks AS t
    ON t.ticker = f.ticker
    AND t.date = CAST(timezone('UTC', f.window_start) AS DATE)
    AND t.time >= f.window_start
    AND t.time < f.window_end
WHERE f.late
GROUP BY ALL
ORDER BY f.window_start DESC, f.ticker;
