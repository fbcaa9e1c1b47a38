//! The cluster tests' PostgreSQL (see [`flowscope::bench::postgres`]) and lake extensions.

use std::path::PathBuf;

#[allow(unused_imports)] // only the cluster tests start one
pub use flowscope::bench::postgres::Postgres;

/// Where the test script installed the lake extensions' PyPI packages.
pub fn lake_extensions() -> PathBuf {
    match std::env::var_os("FLOWSCOPE_TEST_LAKE_EXTENSIONS") {
        Some(dir) => PathBuf::from(dir),
        None => panic!(
            "the cluster tests need the DuckLake, postgres and parquet extensions: run scripts/test, which installs \
             them, or `pip install --target DIR duckdb-extension-ducklake==1.5.5 \
             duckdb-extension-postgres-scanner==1.5.5 duckdb-extension-parquet==1.5.5` and set \
             FLOWSCOPE_TEST_LAKE_EXTENSIONS=DIR"
        ),
    }
}
