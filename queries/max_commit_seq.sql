SELECT greatest(
    (SELECT coalesce(max(commit_seq), 0) FROM spans),
    (SELECT coalesce(max(commit_seq), 0) FROM span_links),
    (SELECT coalesce(max(commit_seq), 0) FROM logs),
    (SELECT coalesce(max(commit_seq), 0) FROM metric_points)
);
