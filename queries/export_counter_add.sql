-- Adds $3 to a flow-metrics series.
INSERT INTO export_counters VALUES ($1, $2, $3)
ON CONFLICT (metric, labels) DO UPDATE SET value = export_counters.value + excluded.value;
