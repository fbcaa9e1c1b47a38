CREATE TEMP TABLE IF NOT EXISTS stitch_traces (trace_id VARCHAR);
CREATE TEMP TABLE IF NOT EXISTS stitch_keys (key BIGINT);
CREATE TEMP TABLE IF NOT EXISTS stitch_hits (key BIGINT, updated_unix_nano BIGINT);
CREATE TEMP TABLE IF NOT EXISTS found_flows (flow_id UUID, updated_unix_nano BIGINT);
CREATE TEMP TABLE IF NOT EXISTS stale_flows (flow_id UUID);
