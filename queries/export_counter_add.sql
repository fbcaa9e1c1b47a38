-- Adds the roll-up's increments (export_increments.sql) to the flow-metrics series.
INSERT INTO export_counters SELECT metric, labels, sum(value) FROM export_increments GROUP BY ALL
ON CONFLICT (metric, labels) DO UPDATE SET value = export_counters.value + excluded.value;
