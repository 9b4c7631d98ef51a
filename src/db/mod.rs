//! Databases: SQLite through rusqlite, MySQL/MariaDB through the `mysql` crate, Redis through
//! the `redis` crate. Plain Rust, no Lua:
//! queries and key scans are row sources, tables and `RESTORE` are row sinks over the row model
//! of [`crate::formats`].

pub mod mysql;
pub mod redis;
mod sqlite;

pub use sqlite::{
    Db, DbError, FileCheck, InsertOptions, InsertReport, OnConflict, Params, QuerySource,
    ScriptReport, TableSink,
};
