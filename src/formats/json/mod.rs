//! JSON (one array of objects) and NDJSON (one object per line), both streaming.
//!
//! The JSON reader cuts the top-level array into its elements with a small scanner that
//! tracks strings and nesting, and parses each element on its own with `serde_json`, so memory
//! stays at one object however long the array is, and errors point at the line and column in
//! the whole input. Objects are read straight into the row buffer (keys looked up by name, no
//! intermediate `serde_json::Value`).
//!
//! Columns are the keys of the first object, unless the `columns` option names them (then
//! other keys are ignored). A key missing from an object is null; a key the first object did
//! not have is an error. Nested arrays and objects are kept as their JSON text.

mod object;
mod read;
mod scanner;
mod write;

#[cfg(test)]
mod tests;

pub use read::{JsonReader, NdjsonReader};
pub use write::{JsonWriter, NdjsonWriter};
