INSERT INTO export_progress VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET commit_seq = excluded.commit_seq;
