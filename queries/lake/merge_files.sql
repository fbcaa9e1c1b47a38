-- Merges the small files of adjacent snapshots (rows keep the snapshot that added them).
-- One row per table merged: schema, table, files merged, files written.
CALL ducklake_merge_adjacent_files('lake')
