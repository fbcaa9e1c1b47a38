-- The lake, attached under the name every lake query uses. {catalog} and {data_path} are
-- replaced by checked SQL string literals (ATTACH takes no parameters).
ATTACH IF NOT EXISTS {catalog} AS lake (DATA_PATH {data_path});
