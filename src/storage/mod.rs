//! Stores: local folders, S3 buckets and memory, behind one synchronous API that streams,
//! writes atomically and keeps local stores confined.
//!
//! Plain Rust: nothing here knows Lua or jobs. The Lua binding is `lua/store.rs`.
//!
//! - [`StorageConfig`] is what `ferry.toml` says (allowed roots, named stores); a
//!   [`StoreRegistry`] (`registry.rs`) opens stores by name or URL ([`StoreUrl`]) for one run,
//!   keeping memory stores alive for the run and reusing clients (S3 clients are built in
//!   `s3.rs`).
//! - [`Store`] (`store.rs`) offers `list`, `stat`, `exists`, `read`, `write`, `open`
//!   ([`Reader`]), `create` ([`Writer`]) (both in `stream.rs`), `delete`, `copy`; [`copy`]
//!   (`copy.rs`) copies across stores, streaming.
//! - Local stores live in `local.rs` (std::fs, temp file + fsync + rename); S3 and memory stores
//!   in `object.rs` (object_store, multipart uploads). [`copy_files`] (`bulk.rs`) copies many
//!   files at once for backups and restores: hashed while copied, on a few threads, and into a
//!   local store made durable per batch (temp files, one `syncfs`, renames, one `syncfs`) rather
//!   than per file. Every blocking wait goes through the one
//!   runtime in `runtime.rs` and gives up when the caller's [`Interrupt`] fires.
//! - Pending writes are journaled (`journal.rs`) so that [`recover`] (`recovery.rs`) can remove
//!   temp files and abort uploads left behind by a process that died.
//! - `confine.rs` is the one confinement check of local paths ([`confine_path`],
//!   [`confine_dir`], [`Confinement`]): local stores use it, and so do the
//!   other layers for every file a script or job spec names.
//!
//! Invariants: nothing half-written is visible under a final name; a [`Writer`] that is dropped
//! without [`Writer::commit`] discards its data; memory use of a read, write or copy is bounded
//! by a few buffers whatever the object's size; no message contains a credential.

mod bulk;
mod config;
mod confine;
mod copy;
mod error;
mod journal;
mod local;
mod object;
mod recovery;
mod registry;
mod runtime;
mod s3;
mod store;
mod stream;
mod url;

pub use bulk::{BulkItem, BulkOptions, Conflict, FileError, Outcome, copy_files, hex};
pub use config::{S3Options, Secret, StorageConfig, StoreSpec};
pub use confine::{Confinement, confine_dir, confine_path};
pub use copy::{copy, copy_hashed};
pub use error::{ErrorKind, Op, StorageError};
pub use journal::{TEMP_MARKER, is_temp_name, sweep_temp_files};
pub use recovery::{Recovery, recover};
pub use registry::{StoreRegistry, artifact_area};
pub use runtime::Interrupt;
pub(crate) use runtime::{block_on_interruptible, runtime_handle};
pub(crate) use store::Waiter;
pub use store::{Meta, Store, Unreadable, WriteOptions};
pub use stream::{Reader, Writer};
pub use url::{StoreUrl, validate_path, validate_prefix};
