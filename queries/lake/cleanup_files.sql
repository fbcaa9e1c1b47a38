-- Deletes the data files no kept snapshot uses any more; returns one row per file.
CALL ducklake_cleanup_old_files('lake', cleanup_all => true)
