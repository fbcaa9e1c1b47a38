-- Memory DuckDB accounts for, by what it holds it for (table data, indexes, ...).
SELECT tag, memory_usage_bytes FROM duckdb_memory() WHERE memory_usage_bytes > 0 ORDER BY tag;
