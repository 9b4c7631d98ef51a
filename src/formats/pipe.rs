//! Moving rows from a source to a sink.
//!
//! [`pipe`] reuses one row buffer for the whole stream: once the buffer's text slots have grown
//! to the longest values, a row costs no allocation at all. [`pipe_batches`] hands batches to a
//! transformation (a script's `map`) and reuses the batch buffer between calls.

use super::error::FormatError;
use super::row::{RowSink, RowSource, Value};
use crate::cancel::{CHECK_ROWS, Every};

/// Moves every remaining row of `src` into `sink` and returns how many were written. Calls
/// `sink.begin` with the source's columns unless the sink has begun already; does not call
/// `sink.finish`, so several sources can feed one sink. Stops with
/// [`FormatError::Cancelled`] when the calling thread's cancel scope says so (asked every
/// [`CHECK_ROWS`] rows). A sink with a bulk path of its own ([`RowSink::pull`]) takes the rows
/// itself.
pub fn pipe(src: &mut dyn RowSource, sink: &mut dyn RowSink) -> Result<u64, FormatError> {
    // Bulk path: a source that writes CSV natively (PostgreSQL's COPY) into a plain CSV writer.
    if !sink.started()
        && let Some(opts) = sink.raw_csv_options()
        && src.can_copy_csv(&opts)
    {
        let columns = src.columns().to_vec();
        if let Some(out) = sink.raw_csv_begin(&columns)
            && let Some(r) = src.copy_csv(out, &opts)
        {
            return r;
        }
    }
    if !sink.started() {
        if let Some(taken) = sink.pull(src) {
            return taken;
        }
        sink.begin(src.columns())?;
    }
    let mut row = Vec::with_capacity(src.columns().len());
    let mut n = 0u64;
    let mut every = Every::new(CHECK_ROWS);
    while src.next_row(&mut row)? {
        sink.write_row(&row)?;
        n += 1;
        every.tick(1)?;
    }
    Ok(n)
}

/// Moves rows in batches of up to `batch` through `map`, which receives the batch buffer
/// filled with source rows and leaves in it the rows to write (fewer, more or changed ones,
/// with `out_columns` as their columns). Returns how many rows were written.
pub fn pipe_batches<F>(
    src: &mut dyn RowSource,
    sink: &mut dyn RowSink,
    batch: usize,
    out_columns: &[String],
    mut map: F,
) -> Result<u64, FormatError>
where
    F: FnMut(&mut Vec<Vec<Value>>) -> Result<(), FormatError>,
{
    let batch = batch.max(1);
    if !sink.started() {
        sink.begin(out_columns)?;
    }
    let mut rows: Vec<Vec<Value>> = Vec::with_capacity(batch);
    let mut spare: Vec<Vec<Value>> = Vec::new();
    let mut written = 0u64;
    let mut every = Every::new(CHECK_ROWS);
    loop {
        rows.clear();
        let mut end = false;
        while rows.len() < batch {
            let mut row = spare.pop().unwrap_or_default();
            if !src.next_row(&mut row)? {
                end = true;
                break;
            }
            rows.push(row);
            every.tick(1)?;
        }
        if !rows.is_empty() {
            map(&mut rows)?;
            for row in &rows {
                sink.write_row(row)?;
                written += 1;
            }
            spare.append(&mut rows);
            spare.truncate(batch);
        }
        if end {
            return Ok(written);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::row::{MemorySink, MemorySource};

    #[test]
    fn pipe_moves_all_rows_and_batches_can_drop() {
        let cols = vec!["n".to_string()];
        let rows: Vec<Vec<Value>> = (0..10).map(|i| vec![Value::Int(i)]).collect();
        let mut src = MemorySource::new(cols.clone(), rows.clone());
        let mut sink = MemorySink::default();
        assert_eq!(pipe(&mut src, &mut sink).unwrap(), 10);
        assert_eq!(sink.rows, rows);

        let mut src = MemorySource::new(cols.clone(), rows);
        let mut sink = MemorySink::default();
        let mut calls = 0;
        let n = pipe_batches(&mut src, &mut sink, 3, &cols, |batch| {
            calls += 1;
            batch.retain(|r| matches!(r[0], Value::Int(i) if i % 2 == 0));
            Ok(())
        })
        .unwrap();
        assert_eq!((n, calls), (5, 4));
    }

    /// A source of endless rows that asks for a stop after `at` rows and counts what it gave.
    struct Endless {
        cols: Vec<String>,
        given: std::sync::Arc<std::sync::atomic::AtomicU64>,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
        at: u64,
    }

    impl RowSource for Endless {
        fn columns(&self) -> &[String] {
            &self.cols
        }
        fn name(&self) -> &str {
            "endless"
        }
        fn next_row(&mut self, row: &mut Vec<Value>) -> Result<bool, FormatError> {
            use std::sync::atomic::Ordering;
            let n = self.given.fetch_add(1, Ordering::SeqCst) + 1;
            if n == self.at {
                self.stop.store(true, Ordering::SeqCst);
            }
            row.clear();
            row.push(Value::Int(n as i64));
            Ok(true)
        }
    }

    #[test]
    fn pipes_stop_within_a_check_interval_of_a_cancel() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        for batched in [false, true] {
            let stop = Arc::new(AtomicBool::new(false));
            let given = Arc::new(AtomicU64::new(0));
            let s = stop.clone();
            let _scope = crate::cancel::scope(Arc::new(move || s.load(Ordering::SeqCst)));
            let at = 100_003;
            let mut src = Endless {
                cols: vec!["n".into()],
                given: given.clone(),
                stop,
                at,
            };
            let mut sink = MemorySink::default();
            let r = if batched {
                pipe_batches(&mut src, &mut sink, 1000, &["n".to_string()], |_| Ok(()))
            } else {
                pipe(&mut src, &mut sink)
            };
            assert!(matches!(r, Err(FormatError::Cancelled(_))), "{r:?}");
            let after = given.load(Ordering::SeqCst) - at;
            assert!(
                after <= CHECK_ROWS,
                "{after} rows read after the cancel (batched: {batched})"
            );
        }
    }
}
