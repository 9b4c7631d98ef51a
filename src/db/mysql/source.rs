//! The rows of a query as a streaming row source (MySQL's unbuffered result: rows are read from
//! the socket as the source is read, so memory stays constant on any table size).

use mysql::prelude::Queryable;
use mysql::{Binary, QueryResult, Text};

use super::values::{ColKind, bind, store};
use super::{Db, MysqlError, excerpt};
use crate::cancel::CHECK_ROWS;
use crate::db::Params;
use crate::formats::{FormatError, RowSource, Value};

/// The result a source is reading. The crate's result borrows the connection; here it is kept
/// with that borrow extended to `'static`, which is sound because the connection lives at a
/// fixed heap address owned by the same [`super::State`] that owns this value, is freed only
/// after it, and nobody else uses the connection while it lives (`State::conn` drops it first).
pub(crate) struct Active {
    generation: u64,
    result: Protocol,
}

enum Protocol {
    Text(QueryResult<'static, 'static, 'static, Text>),
    Binary(QueryResult<'static, 'static, 'static, Binary>),
}

impl Protocol {
    fn next(&mut self) -> Option<mysql::Result<mysql::Row>> {
        match self {
            Protocol::Text(r) => r.next(),
            Protocol::Binary(r) => r.next(),
        }
    }

    fn columns(&self) -> Vec<mysql::Column> {
        match self {
            Protocol::Text(r) => r.columns().as_ref().to_vec(),
            Protocol::Binary(r) => r.columns().as_ref().to_vec(),
        }
    }
}

/// The rows of a query, as a row source.
pub struct QuerySource {
    db: Db,
    generation: u64,
    columns: Vec<String>,
    kinds: Vec<ColKind>,
    name: String,
    context: String,
    rows: u64,
    done: bool,
}

impl QuerySource {
    pub(super) fn new(db: &Db, sql: &str, params: &Params) -> Result<QuerySource, MysqlError> {
        let context = excerpt(sql);
        crate::cancel::check().map_err(|_| db.cancelled(sql))?;
        let mut state = db.borrow_state()?;
        let conn: *mut mysql::Conn = state.conn();
        // SAFETY: see `Active`: the connection stays at this address until the state is dropped,
        // and the result made from this borrow is stored in (and dropped before) that state.
        let conn: &'static mut mysql::Conn = unsafe { &mut *conn };
        let bound = bind(db, conn, sql, params)?;
        let armed = db.inner.watch.arm();
        let result = match bound {
            None => conn.query_iter(sql).map(Protocol::Text),
            Some((stmt, p)) => conn.exec_iter(&stmt, p).map(Protocol::Binary),
        };
        drop(armed);
        let result = match result {
            Ok(r) => r,
            Err(e) => {
                drop(state);
                return Err(db.sql_error(context, e));
            }
        };
        let cols = result.columns();
        let columns = cols.iter().map(|c| c.name_str().into_owned()).collect();
        let kinds = cols.iter().map(ColKind::of).collect();
        state.generation += 1;
        let generation = state.generation;
        state.active = Some(Active { generation, result });
        Ok(QuerySource {
            db: db.clone(),
            generation,
            columns,
            kinds,
            name: format!("{} query {context}", db.name()),
            context,
            rows: 0,
            done: false,
        })
    }

    fn fail(&mut self, e: MysqlError) -> FormatError {
        self.done = true;
        FormatError::other(e)
    }

    /// Ends this source's result on the connection: stopped on the server first when rows are
    /// left, so that discarding them does not mean reading them all.
    fn release(&mut self, kill: bool) {
        let Ok(mut state) = self.db.inner.state.try_borrow_mut() else {
            return;
        };
        if state
            .active
            .as_ref()
            .is_some_and(|a| a.generation == self.generation)
        {
            if kill {
                self.db.inner.watch.stop_statement();
            }
            state.active = None;
        }
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
        if self.rows.is_multiple_of(CHECK_ROWS) && crate::cancel::requested() {
            self.db.kill_running();
            self.release(false);
            let e = MysqlError::Cancelled {
                target: self.db.name().to_owned(),
                context: self.context.clone(),
            };
            return Err(self.fail(e));
        }
        let db = self.db.clone();
        let Ok(mut state) = db.inner.state.try_borrow_mut() else {
            let e = MysqlError::state(
                db.name(),
                "the connection is busy: a query of this connection cannot feed a statement on the same connection (MySQL carries one statement at a time); open a second connection with ferry.mysql.connect",
            );
            return Err(self.fail(e));
        };
        let Some(active) = state
            .active
            .as_mut()
            .filter(|a| a.generation == self.generation)
        else {
            drop(state);
            let e = MysqlError::state(
                db.name(),
                format!(
                    "{}: the rest of this query's rows were discarded because another statement ran on the same connection before they were read (MySQL carries one statement at a time); read the rows first, or use a second connection",
                    self.context
                ),
            );
            return Err(self.fail(e));
        };
        let next = db.watched(|| active.result.next());
        match next {
            None => {
                state.active = None;
                self.done = true;
                Ok(false)
            }
            Some(Err(e)) => {
                state.active = None;
                drop(state);
                let e = db.sql_error(self.context.clone(), e);
                Err(self.fail(e))
            }
            Some(Ok(r)) => {
                drop(state);
                self.rows += 1;
                let values = r.unwrap_raw();
                row.resize(self.columns.len(), Value::Null);
                for (i, (slot, v)) in row.iter_mut().zip(values).enumerate() {
                    let v = v.unwrap_or(mysql::Value::NULL);
                    if let Err(m) = store(slot, v, self.kinds[i]) {
                        let e = MysqlError::Value {
                            target: db.name().to_owned(),
                            context: format!(
                                "{}: row {}, column {} ({})",
                                self.context,
                                self.rows,
                                i + 1,
                                self.columns[i]
                            ),
                            message: m,
                        };
                        self.release(true);
                        return Err(self.fail(e));
                    }
                }
                Ok(true)
            }
        }
    }

    fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for QuerySource {
    fn drop(&mut self) {
        if !self.done {
            self.release(true);
        }
    }
}
