-- One day's one-minute bars of one ticker. Edit the two variables, e.g.
--   SET VARIABLE ticker = 'AMZN';
--   SET VARIABLE day = DATE '2024-04-16';
-- The defaults pick the most recently active ticker and its latest (UTC) day.
SET VARIABLE ticker = (SELECT arg_max(ticker, window_start) FROM features);
SET VARIABLE day = (
    SELECT CAST(timezone('UTC', max(window_start)) AS DATE)
    FROM features
    WHERE ticker = getvariable('ticker')
);

SELECT window_start, open, high, low, close, volume, vwap, tick_count, std_price, late, gap
FROM features
WHERE ticker = getvariable('ticker')
    AND window_start >= timezone('UTC', getvariable('day')::TIMESTAMP)
    AND window_start < timezone('UTC', getvariable('day')::TIMESTAMP) + INTERVAL 1 DAY
ORDER BY window_start;
