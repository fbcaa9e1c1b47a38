-- The lake's extensions, from the node's extension directory (autoloading is off).
LOAD parquet;
LOAD postgres_scanner;
LOAD ducklake;
