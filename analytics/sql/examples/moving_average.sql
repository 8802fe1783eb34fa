-- Moving averages with window functions: a 20-bar simple moving average of the close, and
-- a 20-minute (time-based, so silent minutes do not stretch it) volume-weighted price.
-- Prices are REAL (the float32 received); arithmetic on them shows float32 noise
-- (124.12000274658203), hence the rounding.
SELECT
    ticker,
    window_start,
    close,
    round(avg(close) OVER last_20_bars, 6) AS sma_20,
    round(
        sum(vwap * volume) OVER last_20_minutes / nullif(sum(volume) OVER last_20_minutes, 0),
        6
    ) AS vwap_20m,
    round(close - avg(close) OVER last_20_bars, 6) AS distance_from_sma
FROM features
WINDOW
    last_20_bars AS (PARTITION BY ticker ORDER BY window_start ROWS 19 PRECEDING),
    last_20_minutes AS (
        PARTITION BY ticker ORDER BY window_start
        RANGE BETWEEN INTERVAL 19 MINUTES PRECEDING AND CURRENT ROW
    )
ORDER BY ticker, window_start;
