//! Databases: SQLite through rusqlite. Plain Rust, no Lua: queries are row sources and tables
//! are row sinks over the row model of [`crate::formats`].

mod sqlite;

pub use sqlite::{
    Db, DbError, InsertOptions, InsertReport, OnConflict, Params, QuerySource, ScriptReport,
    TableSink,
};
