SELECT coalesce(max(commit_seq), 0) FROM queue_counts;
