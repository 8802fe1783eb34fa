-- The stored ticks behind one feature row, read from the lake through the ticks view
-- (filtering on the partition columns ticker, date and minute reads one file).
-- Defaults: the newest window of the most recently active ticker.
SET VARIABLE ticker = (SELECT arg_max(ticker, window_start) FROM features);
SET VARIABLE start = (SELECT max(window_start) FROM features WHERE ticker = getvariable('ticker'));

SELECT time, price, day_volume, market_hours, received_at, seq
FROM ticks
WHERE ticker = getvariable('ticker')
    AND date = CAST(timezone('UTC', getvariable('start')) AS DATE)
    AND minute = strftime(timezone('UTC', getvariable('start')), '%H%M')
ORDER BY time, seq;
