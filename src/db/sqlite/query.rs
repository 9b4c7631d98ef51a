//! [`QuerySource`]: a query as a streaming row source.

use std::rc::Rc;

use rusqlite::{Connection, Rows, Statement};

use super::authorizer::Refusals;
use super::{Db, DbError, Params, excerpt, store};
use crate::formats::{FormatError, RowSource, Value};

/// The rows of a query, as a row source.
///
/// rusqlite's `Rows` borrows its `Statement`, which borrows the `Connection`. A source that a
/// script holds between calls must own all three, so this struct keeps the connection alive
/// through its `Rc`, the statement in a heap allocation that never moves, and the rows with
/// their lifetimes extended to `'static`. The invariants that make this sound: the `Rc` keeps
/// the connection at a fixed heap address for as long as this struct lives; the statement is
/// only freed in `Drop`, after the rows; nothing hands out the extended references.
pub struct QuerySource {
    pub(super) rows: Option<Rows<'static>>,
    pub(super) stmt: *mut Statement<'static>,
    pub(super) _conn: Rc<Connection>,
    pub(super) columns: Vec<String>,
    pub(super) name: String,
    pub(super) db: String,
    pub(super) sql: String,
    pub(super) done: bool,
    pub(super) refusals: Refusals,
}

impl QuerySource {
    pub(super) fn new(db: &Db, sql: &str, params: &Params) -> Result<QuerySource, DbError> {
        let conn = db.conn.clone();
        // SAFETY: the connection lives in the Rc's heap allocation, which `_conn` keeps alive
        // (and in place) for as long as the statement and rows that borrow it (see the type's
        // documentation).
        let conn_ref: &'static Connection = unsafe { &*Rc::as_ptr(&conn) };
        let mut stmt = conn_ref.prepare(sql).map_err(|e| db.sql_error(sql, &e))?;
        db.bind(&mut stmt, sql, params)?;
        let columns = stmt.column_names().into_iter().map(str::to_owned).collect();
        let stmt = Box::into_raw(Box::new(stmt));
        // SAFETY: `stmt` was just allocated and is freed only in `Drop`, after `rows`.
        let rows = unsafe { (*stmt).raw_query() };
        Ok(QuerySource {
            rows: Some(rows),
            stmt,
            _conn: conn,
            columns,
            name: format!("{} query {}", db.name, excerpt(sql)),
            db: db.name.clone(),
            sql: sql.to_owned(),
            done: false,
            refusals: db.refusals.clone(),
        })
    }
}

impl Drop for QuerySource {
    fn drop(&mut self) {
        // The rows reset the statement when dropped: they go first.
        self.rows = None;
        // SAFETY: allocated by `Box::into_raw` in `new`, freed only here, and the rows that
        // borrowed it are gone.
        unsafe { drop(Box::from_raw(self.stmt)) };
    }
}

impl RowSource for QuerySource {
    fn columns(&self) -> &[String] {
        &self.columns
    }

    fn next_row(&mut self, row: &mut Vec<Value>) -> Result<bool, FormatError> {
        if self.done {
            return Ok(false);
        }
        let Some(rows) = self.rows.as_mut() else {
            return Ok(false);
        };
        match rows.next() {
            Ok(Some(r)) => {
                row.resize(self.columns.len(), Value::Null);
                for (i, slot) in row.iter_mut().enumerate() {
                    let v = r.get_ref(i).map_err(|e| {
                        FormatError::other(self.refusals.error(&self.db, excerpt(&self.sql), &e))
                    })?;
                    store(slot, v);
                }
                Ok(true)
            }
            Ok(None) => {
                self.done = true;
                // Reset the statement now so it holds no read lock while the script goes on.
                self.rows = None;
                Ok(false)
            }
            Err(e) => {
                self.done = true;
                Err(FormatError::other(self.refusals.error(
                    &self.db,
                    excerpt(&self.sql),
                    &e,
                )))
            }
        }
    }

    fn name(&self) -> &str {
        &self.name
    }
}
