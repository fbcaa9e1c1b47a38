-- How far the flow-metrics roll-up got ($1: 'flows' or 'queue_counts').
SELECT coalesce(max(commit_seq), 0) FROM export_progress WHERE name = $1;
