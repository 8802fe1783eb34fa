-- Views over the features table and the Parquet lake, created by ticklake in its database.
--
-- The writer (the analytics job) re-creates these whenever this file or the data directory
-- changes. {{lake}} stands for the lake's read_parquet(...) expression over the data
-- directory (lake.layout.duckdb_read_sql); while the lake holds no file yet it is an
-- empty relation with the same columns, replaced once the first minute file exists.
-- To use this file by hand, replace {{lake}} with what lake.layout.duckdb_read_sql(<data>)
-- returns (both tiers and the open minutes, each tick once); a read_parquet glob over
-- <data>/ticks/ alone would read only the minute tier.

-- Every stored tick: the proto's fields, received_at, seq, and the partition columns
-- ticker, date (UTC) and minute (HHMM, UTC). Filter on ticker and date to read few files.
CREATE OR REPLACE VIEW ticks AS SELECT * FROM {{lake}};

-- One ticker's ticks, optionally of one UTC day: the rows of `ticks` for that symbol (and
-- date), but only that ticker's folders are listed, so it stays fast however many tickers
-- and days the lake holds (`ticks` lists every file of the lake on each query):
--   SELECT * FROM ticks_of('AAPL', day := DATE '2024-01-16') WHERE minute = '1530';
--   SELECT count(*) FROM ticks_of('EURUSD=X') WHERE date >= DATE '2024-01-01';
CREATE OR REPLACE MACRO ticks_of(symbol, day := NULL) AS TABLE SELECT * FROM {{ticker_lake}};

-- The seed article's output under its own names: open_time/close_time bound the window,
-- "time" is the last tick's time in epoch milliseconds as the seed printed it (an integer
-- here; the seed's NumPy array made it a float), min/max/first_price/last_price are the
-- prices, volume is the traded volume (contract: never negative, NULL without day_volume).
CREATE OR REPLACE VIEW seed_features AS
SELECT
    ticker,
    window_start AS open_time,
    window_end AS close_time,
    epoch_ms(last_time) AS "time",
    low AS "min",
    high AS "max",
    open AS first_price,
    close AS last_price,
    volume
FROM features;

-- Bars of any width (milliseconds, dividing a day: 300000, 3600000, 86400000, ...) derived
-- exactly from the one-minute rows, aligned to the Unix epoch, so days are UTC days:
--   open/close: the first/last minute's; high/low: max/min; volume: sum (NULL if all NULL);
--   vwap: sum(vwap * volume) / sum(volume), the exact volume-weighted price of the bar;
--   tick_count: sum; mean_price: tick-count-weighted mean of the minute means;
--   std_price: the pooled sample standard deviation from each minute's count, mean and
--   standard deviation, sqrt(sum((n - 1) s^2 + n (m - M)^2) / (N - 1)), equal to the
--   standard deviation over all the bar's ticks; log_return: ln(close / open);
--   minutes: how many one-minute rows the bar holds; late/gap: any minute's flag.
CREATE OR REPLACE MACRO bars(width_ms) AS TABLE
WITH minute AS (
    SELECT
        *,
        epoch_ms(window_start) // width_ms * width_ms AS bar_ms,
        sum(mean_price * tick_count) OVER bar / sum(tick_count) OVER bar AS bar_mean
    FROM features
    WINDOW bar AS (PARTITION BY ticker, epoch_ms(window_start) // width_ms)
)
SELECT
    ticker,
    to_timestamp(bar_ms / 1000) AS bar_start,
    to_timestamp((bar_ms + width_ms) / 1000) AS bar_end,
    arg_min(open, window_start) AS open,
    max(high) AS high,
    min(low) AS low,
    arg_max(close, window_start) AS close,
    sum(volume)::BIGINT AS volume,
    sum(vwap * volume) / nullif(sum(volume), 0) AS vwap,
    sum(tick_count)::BIGINT AS tick_count,
    any_value(bar_mean) AS mean_price,
    CASE WHEN sum(tick_count) > 1 THEN sqrt(
        sum((tick_count - 1) * coalesce(std_price, 0) ^ 2
            + tick_count * (mean_price - bar_mean) ^ 2) / (sum(tick_count) - 1)
    ) END AS std_price,
    CASE WHEN arg_min(open, window_start) > 0 AND arg_max(close, window_start) > 0
        THEN ln(arg_max(close, window_start)::DOUBLE / arg_min(open, window_start)::DOUBLE)
    END AS log_return,
    min(first_time) AS first_time,
    max(last_time) AS last_time,
    count(*) AS minutes,
    bool_or(late) AS late,
    bool_or(gap) AS gap
FROM minute
GROUP BY ticker, bar_ms;

CREATE OR REPLACE VIEW bars_5m AS SELECT * FROM bars(300000);
CREATE OR REPLACE VIEW bars_1h AS SELECT * FROM bars(3600000);
CREATE OR REPLACE VIEW bars_1d AS SELECT * FROM bars(86400000);
