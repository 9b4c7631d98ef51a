---@meta ferry
-- LuaCATS annotations of ferry's host API, for lua-language-server (completion, hovers, type
-- checks in editors). This file is ferry's own: `ferry init` and `ferry new` write it into a
-- project as `.ferry/types/ferry.lua` and refresh it when ferry changes, so do not edit that copy.
-- It is never run. The reference is docs/lua-api.md; a test checks that every function the host
-- registers is annotated here and documented there, and that neither names one that does not exist.

--------------------------------------------------------------------------------------------------
-- Job scripts
--------------------------------------------------------------------------------------------------

---A duration: `"250ms"`, `"30s"`, `"10m"`, `"1h30m"`, `"2d"`, or a number of seconds.
---@alias ferry.Duration string|number

---A size: `"64MiB"`, `"1GiB"`, `"10MB"`, or a number of bytes.
---@alias ferry.Size string|number

---A time: RFC 3339 text with any offset, a date (`"2026-01-31"`), or epoch seconds.
---@alias ferry.Time string|number

---@alias ferry.OnError "fail_fast"|"continue"|"fast_fail"|"fail"
---@alias ferry.OnConflict "skip"|"overwrite"|"fail"|"replace"
---@alias ferry.ErrorKind "not_found"|"already_exists"|"denied"|"invalid"|"unreachable"|"unsupported"|"too_large"|"data"|"conflict"|"sql"|"server"|"io"|"timeout"|"cancelled"|"error"
---@alias ferry.ColumnType "text"|"integer"|"float"|"boolean"|"bytes"|"timestamp"
---A reader argument: a Reader (`store:open(path)`) or a string holding the content.
---@alias ferry.Input ferry.Reader|string
---A writer argument: a Writer (`store:create(path)`) or a zip entry (`zip:create(name)`).
---@alias ferry.Output ferry.Writer|ferry.ZipEntryWriter
---A store argument: a store object, a store name from `ferry.toml` or a URL.
---@alias ferry.StoreRef ferry.Store|string
---A row: a table keyed by column name (null is `nil`).
---@alias ferry.Row table<string, any>

---The table a job script (`scripts/NAME.lua`) returns.
---@class ferry.Job
---@field run fun(ctx: ferry.Context): any what the job does; the value it returns becomes the run's summary (JSON)
---@field description? string for people
---@field params? table<string, ferry.Param> declared parameters
---@field timeout? ferry.Duration wall-clock limit of a run (1ms to 30d; default `[limits] timeout`, 1h)
---@field memory? ferry.Size Lua memory limit of a run (1MiB to 1TiB; default `[limits] memory`, 256MiB)
---@field schedule? string|ferry.Schedule cron schedule: `"30 2 * * *"`, 6 fields with seconds first, `"@daily"`
---@field watch? string|ferry.Watch a watched folder under the allowed roots: `"inbox/orders/*.csv"`
---@field retries? integer how often a failed run is retried (0 to 100, default 0)
---@field retry_delay? ferry.Duration delay before the first retry, doubled each time (default 30s)
---@field retry_max_delay? ferry.Duration longest wait between two attempts (default 6h)
---@field overlap? "skip"|"queue"|"allow" what happens to a run requested while one is going (default skip)
---@field after? string|ferry.After|(string|ferry.After)[] start this job when a run of another ends
---@field notify? ferry.Notify|false notifications of this job's run ends, over `[notify]` of ferry.toml; `false` sends nothing

---@class ferry.Notify
---@field on? ("failure"|"success"|"recovered"|"skipped")[] the events notified about (default `{ "failure" }`)
---@field webhook? string|false a URL receiving a JSON POST per notification (`"${VAR}"` reads the environment)
---@field webhook_secret? string key of the HMAC-SHA256 `X-Ferry-Signature` of webhook requests
---@field slack? string|false a Slack-compatible incoming webhook URL
---@field email? string[]|false recipients (needs `[notify.smtp]` in ferry.toml)

---@class ferry.Schedule
---@field cron string the cron expression
---@field timezone? string an IANA zone (default UTC)
---@field missed? "skip"|"once"|"all" what happens to occurrences missed while the daemon was down
---@field jitter? ferry.Duration a random delay of up to this (0s to 1d)

---@class ferry.Watch
---@field path string the folder, relative to the project root
---@field pattern? string a glob of the file names to pick up
---@field settle? ferry.Duration how long a file must stay unchanged before it is picked up (0s to 1d)
---@field after? "archive"|"delete" what happens to a file after a successful run
---@field poll? ferry.Duration how often the folder is scanned besides file events (100ms to 1d)

---@class ferry.After
---@field job string the upstream job
---@field on? "success"|"failure"|"any" which ends of its runs start this job

---@class ferry.Param
---@field type? "string"|"integer"|"number"|"boolean"|"array"|"object" default `string`
---@field default? any the value when the param is not given
---@field required? boolean
---@field description? string
---@field items? "string"|"integer"|"number"|"boolean"|"object" the type of an array's items
---@field secret? boolean a credential: shown as `***` and sealed in the history

--------------------------------------------------------------------------------------------------
-- The job context
--------------------------------------------------------------------------------------------------

---What started a run.
---@class ferry.Trigger
---@field kind "manual"|"api"|"cron"|"file"|"retry"|"rerun"|"job"
---@field scheduled_at? string the cron occurrence (cron)
---@field file? string the dropped file, relative to the project root (file, rerun)
---@field of? integer the run this one retries or reruns, or the upstream run (retry, rerun, job)
---@field attempt? integer the attempt number (retry)
---@field job? string the upstream job (job)
---@field state? string the upstream run's state (job)
---@field summary? any the upstream run's summary (job)

---The job context passed to `run`.
---@class ferry.Context
---@field run_id integer the run's id in the history
---@field job string the job name
---@field trigger ferry.Trigger what started the run
---@field params table<string, any> the converted params
---@field log ferry.Log the run log
---@field state ferry.State values kept between runs of this job
local Context = {}

---The run log: with more than one argument, formatted like `string.format(fmt, ...)`.
---@class ferry.Log
local Log = {}

---@param fmt any
---@param ... any
function Log.info(fmt, ...) end

---@param fmt any
---@param ... any
function Log.warn(fmt, ...) end

---@param fmt any
---@param ... any
function Log.error(fmt, ...) end

---Reports progress, shown by `ferry run` and stored in the history.
---@param done number
---@param total? number
function Context.progress(done, total) end

---Records a file the run produced; the run keeps its own copy.
---@param store ferry.StoreRef
---@param path string the path inside the store
---@param name? string defaults to the file name of `path`
function Context.artifact(store, path, name) end

---A secret's value (`FERRY_SECRET_<NAME>` or `[secrets]` in ferry.toml); a `not_found` error when unset.
---@param name string
---@return string
function Context.secret(name) end

---`true` once a cancel was asked for.
---@return boolean
function Context.cancelled() end

---The run's temporary folder as a local store, removed when the run ends.
---@return ferry.Store
function Context.temp() end

---Everything under `prefix` in `store` is deleted should the run not succeed.
---@param store ferry.Store
---@param prefix string not empty
function Context.discard_on_failure(store, prefix) end

---`ctx.state`: JSON values kept between runs of the job.
---@class ferry.State
local State = {}

---A value this job saved in an earlier run, or `nil`.
---@param key string
---@return any
function State:get(key) end

---Saves a JSON-serialisable value for later runs; `nil` removes it. Saved at once.
---@param key string
---@param value any
function State:set(key, value) end

--------------------------------------------------------------------------------------------------
-- The ferry module
--------------------------------------------------------------------------------------------------

---The host primitives (also `require "ferry"`).
---@class ferry
---@field version string the ferry version
---@field vocab { on_error: string[], on_conflict: string[] } the shared vocabularies
ferry = {}

---Opens a store: a name from `[stores.NAME]` in ferry.toml, a path relative to the project root,
---`file:///abs`, `s3://bucket/prefix` or `memory://NAME`.
---@param name_or_url string
---@param opts? ferry.StoreOptions S3 options
---@return ferry.Store
function ferry.store(name_or_url, opts) end

---Copies an object between any two stores, streaming; returns the bytes copied (and the SHA-256
---of what was copied with `sha256 = true`).
---@param src_store ferry.Store
---@param src_path string
---@param dst_store ferry.Store
---@param dst_path string
---@param opts? { sha256?: boolean }
---@return integer bytes
---@return string? sha256
function ferry.copy(src_store, src_path, dst_store, dst_path, opts) end

---One file of `ferry.copy_files`: `to` defaults to `from`; with `sha256` the content is checked.
---@class ferry.CopyFile
---@field from string
---@field to? string
---@field sha256? string

---What became of one file of `ferry.copy_files`.
---@class ferry.CopyResult
---@field ok boolean
---@field size? integer bytes copied
---@field sha256? string the SHA-256 of what was copied (of what was found, on a mismatch)
---@field skipped? boolean it exists at the destination (`on_conflict = "skip"`)
---@field error? string
---@field kind? string the error kind (`data` for a checksum mismatch)
---@field attempted? boolean false for a file not started after a `fail_fast` failure

---Copies many files between two stores in one call: each read once and hashed, spread over the
---cores, atomic at its destination, made durable once for the whole call; one result per file.
---@param src_store ferry.Store
---@param dst_store ferry.Store
---@param files ferry.CopyFile[]
---@param opts? { on_conflict?: ferry.OnConflict, on_error?: ferry.OnError }
---@return ferry.CopyResult[]
function ferry.copy_files(src_store, dst_store, files, opts) end

---Moves every row from a source to a sink natively and closes the sink; returns the rows written.
---@param source ferry.RowSource
---@param sink ferry.RowSink
---@param opts? ferry.PipeOptions
---@return integer rows
function ferry.pipe(source, sink, opts) end

---Raises an error value of a kind; `level` counts frames of Lua files (0: no location).
---@param kind ferry.ErrorKind
---@param message string
---@param level? integer
function ferry.error(kind, message, level) end

---Marks `t` (or a new table) as an array: written as JSON `[]` even when empty.
---@generic T: table
---@param t? T
---@return T
function ferry.array(t) end

---Compiles an options schema once.
---@param name string shown in errors (`mine.run`)
---@param fields table<string, ferry.SchemaField|string> a field is a type name or a table
---@return ferry.Schema
function ferry.schema(name, fields) end

---Checks options against a schema (or a table of fields); returns the checked table.
---@param opts table?
---@param schema ferry.Schema|table<string, ferry.SchemaField|string>
---@return table
function ferry.options(opts, schema) end

---@class ferry.SchemaField
---@field type? "any"|"string"|"integer"|"number"|"boolean"|"table"|"function"|"time"|"store"|"list"
---@field items? string the type of a list's items
---@field required? boolean
---@field default? any
---@field enum? string[]|"on_error"|"on_conflict" choices, or a shared vocabulary
---@field aliases? table<string, string> other spellings of choices
---@field alias_of? string this option is another name of that one
---@field description? string

---A compiled options schema.
---@class ferry.Schema
local Schema = {}

---Checks options: returns a new table with canonical enum values, times as epoch seconds,
---aliases under their option's name and defaults filled in.
---@param opts table?
---@return table
function Schema:check(opts) end

---A function that checks its last declared parameter (the options) and calls `fn` with the
---checked table.
---@generic F: function
---@param fn F
---@return F
function Schema:wrap(fn) end

---@class ferry.time
ferry.time = {}

---The current time as epoch seconds (a float, millisecond precision).
---@return number
function ferry.time.now() end

---A time to epoch seconds; an `invalid` error when it does not parse.
---@param time ferry.Time
---@return number
function ferry.time.parse(time) end

---A time to RFC 3339 UTC text, or `strftime`-style `fmt` (`"%Y-%m-%d"`).
---@param time ferry.Time
---@param fmt? string
---@return string
function ferry.time.format(time, fmt) end

---@class ferry.hash
ferry.hash = {}

---Hex SHA-256 and the byte count; a reader is streamed.
---@param input ferry.Input
---@return string hex
---@return integer bytes
function ferry.hash.sha256(input) end

---@class ferry.glob
ferry.glob = {}

---Glob match: `*` within one `/` segment, `**` across them, `{a,b}`, `[abc]`.
---@param pattern string
---@param path string
---@return boolean
function ferry.glob.match(pattern, path) end

---@class ferry.regex
ferry.regex = {}

---The first match's captures (`[0]` whole match, `[1]`..., named groups by name) or `nil`.
---@param re string Rust regex syntax
---@param s string
---@return table<integer|string, string>?
function ferry.regex.match(re, s) end

--------------------------------------------------------------------------------------------------
-- Errors
--------------------------------------------------------------------------------------------------

---An error a host function raised, as a script catches it (`pcall`); `tostring(err)` is
---`location: message`.
---@class ferry.Error
---@field kind ferry.ErrorKind a stable name
---@field message string what failed and what was expected, without the location
---@field location string? the script line (`scripts/x.lua:12`), when known
---@field status integer? the HTTP status, for an answer of `ferry.http`

--------------------------------------------------------------------------------------------------
-- Stores, readers and writers
--------------------------------------------------------------------------------------------------

---@class ferry.StoreOptions
---@field endpoint? string S3-compatible server
---@field region? string
---@field access_key_id? string
---@field secret_access_key? string
---@field session_token? string
---@field allow_http? boolean
---@field path_style? boolean default true

---@class ferry.ObjectMeta
---@field path string
---@field size integer
---@field modified string RFC 3339 UTC with milliseconds
---@field etag? string

---@class ferry.WriteOptions
---@field if_absent? boolean fail with `already_exists` when the object exists

---A place that holds objects under `/`-separated paths.
---@class ferry.Store
local Store = {}

---Every object under `prefix`, recursive, sorted by path.
---@param prefix? string
---@return ferry.ObjectMeta[]
function Store:list(prefix) end

---Like `list`, plus every entry that could not be listed, with the reason.
---@param prefix? string
---@return ferry.ObjectMeta[] objects
---@return { path: string, error: string }[] unlisted
function Store:walk(prefix) end

---@param path string
---@return ferry.ObjectMeta?
function Store:stat(path) end

---@param path string
---@return boolean
function Store:exists(path) end

---The whole object (refused past the run's memory limit: use `open`).
---@param path string
---@return string
function Store:read(path) end

---Writes an object atomically; `data` is a string or a reader (streamed).
---@param path string
---@param data string|ferry.Reader
---@param opts? ferry.WriteOptions
function Store:write(path, data, opts) end

---@param path string
---@return ferry.Reader
function Store:open(path) end

---A writer whose object becomes visible at `close()`.
---@param path string
---@param opts? ferry.WriteOptions
---@return ferry.Writer
function Store:create(path, opts) end

---Deletes an object (a missing object is not an error).
---@param path string
function Store:delete(path) end

---Copies within the store, atomic at `to`.
---@param from string
---@param to string
function Store:copy(from, to) end

---The store's URL, or an object's; never with credentials.
---@param path? string
---@return string
function Store:url(path) end

---A byte stream from a store.
---@class ferry.Reader
local Reader = {}

---Up to `n` bytes (nil at the end), `"l"` one line without its end, or `"a"` everything left.
---@param what integer|"l"|"a"
---@return string?
function Reader:read(what) end

---An iterator over the remaining lines.
---@return fun(): string?
function Reader:lines() end

function Reader:close() end

---A byte stream into a store, committed at `close()`.
---@class ferry.Writer
local Writer = {}

---Writes strings and numbers; returns the writer.
---@param ... string|number
---@return ferry.Writer
function Writer:write(...) end

---Commits: the object exists under its name from now on.
function Writer:close() end

---Discards what was written.
function Writer:abort() end

---One entry of a zip archive being written (`zip:create(name)`).
---@class ferry.ZipEntryWriter
local ZipEntryWriter = {}

---@param s string
function ZipEntryWriter:write(s) end

---Ends the entry.
function ZipEntryWriter:close() end

--------------------------------------------------------------------------------------------------
-- Rows: sources, sinks, pipes
--------------------------------------------------------------------------------------------------

---@class ferry.PipeOptions
---@field map? fun(rows: ferry.Row[]): ferry.Row[] sees the rows in batches; returns the rows to write
---@field batch? integer rows per `map` call (default 1000)
---@field columns? string[] the columns of the rows `map` returns
---@field close? boolean close the sink at the end (default true)

---A stream of rows (a format reader, `db:query`, a Redis scan or RDB file).
---@class ferry.RowSource
local RowSource = {}

---An iterator of row tables.
---@return fun(): ferry.Row?
function RowSource:rows() end

---Up to `n` rows (default 1000), `nil` at the end.
---@param n? integer
---@return ferry.Row[]?
function RowSource:read(n) end

---@return string[]
function RowSource:columns() end

---The rows skipped under `on_error = "continue"`.
---@return { count: integer, first: { line: integer, error: string }[] }
function RowSource:errors() end

---The source's counters (a Redis scan: `keys`, `duplicates`, `vanished`).
---@return table<string, integer>
function RowSource:stats() end

function RowSource:close() end

---A destination of rows (a format writer, `db:writer`, a Redis restore, an RDB writer).
---@class ferry.RowSink
local RowSink = {}

---@param row ferry.Row|any[] a table keyed by column name, or a sequence in column order
function RowSink:write(row) end

---Finishes the output and makes it visible.
function RowSink:close() end

---@return integer
function RowSink:count() end

---The sink's counters (a Redis restore: `restored`, `skipped`, `expired`).
---@return table<string, integer>
function RowSink:stats() end

---@class ferry.ReadOptions
---@field types? table<string, ferry.ColumnType>|ferry.ColumnType
---@field columns? string[] keep only these columns, in this order
---@field exclude? string[] drop these columns
---@field on_error? ferry.OnError
---@field timestamp_unit? "s"|"ms"
---@field name? string the input's name in messages

---@class ferry.WriterOptions
---@field columns? string[] write only these columns, in this order
---@field exclude? string[] leave these columns out
---@field timestamp_columns? string[] integer epoch columns written as RFC 3339 UTC text
---@field timestamp_unit? "s"|"ms"
---@field name? string the output's name in messages

--------------------------------------------------------------------------------------------------
-- Formats
--------------------------------------------------------------------------------------------------

---@class ferry.CsvReadOptions: ferry.ReadOptions
---@field delimiter? string default `,`
---@field quote? string default `"`
---@field null? string the text that stands for null
---@field header? boolean default true
---@field names? string[] column names to use

---@class ferry.CsvWriteOptions: ferry.WriterOptions
---@field delimiter? string
---@field quote? string
---@field null? string written for null (default empty)
---@field header? boolean|string[] false, or names to write instead of the column names
---@field bom? boolean
---@field crlf? boolean

---@class ferry.JsonWriteOptions: ferry.WriterOptions
---@field keys? string[] the keys to write instead of the column names

---@class ferry.XlsxReadOptions: ferry.ReadOptions
---@field sheet? string default the first
---@field header? boolean default true

---@class ferry.XlsxWriteOptions: ferry.WriterOptions
---@field sheet? string
---@field header? boolean|string[]

---@class ferry.SqlWriteOptions: ferry.WriterOptions
---@field table string the table the INSERT statements insert into
---@field rows_per_statement? integer default 1
---@field create_table? boolean start with CREATE TABLE IF NOT EXISTS
---@field dialect? "sqlite"|"mysql"|"postgres" the literals' dialect (default "sqlite"; "postgres" writes bytes as '\x..'::bytea)
---@field header? string[] column names to use

---@class ferry.ZipEntryOptions
---@field level? integer|"store" 0..9 (default 2) or "store"
---@field zip64? boolean for entries of 4 GiB or more

---@class ferry.ZipReadOptions
---@field max_entries? integer default 10000
---@field max_size? ferry.Size total uncompressed, default "4GiB"
---@field max_ratio? integer highest compression ratio of an entry above 1 MiB (default 100)
---@field name? string

---@class ferry.csv
ferry.csv = {}

---@param input ferry.Input
---@param opts? ferry.CsvReadOptions
---@return ferry.RowSource
function ferry.csv.reader(input, opts) end

---@param output ferry.Output
---@param opts? ferry.CsvWriteOptions
---@return ferry.RowSink
function ferry.csv.writer(output, opts) end

---@class ferry.json
ferry.json = {}

---@param input ferry.Input
---@param opts? ferry.ReadOptions
---@return ferry.RowSource
function ferry.json.reader(input, opts) end

---@param output ferry.Output
---@param opts? ferry.JsonWriteOptions
---@return ferry.RowSink
function ferry.json.writer(output, opts) end

---@param value any
---@param opts? { pretty?: boolean }
---@return string
function ferry.json.encode(value, opts) end

---`null` becomes `nil`; errors give line and column.
---@param text string
---@return any
function ferry.json.decode(text) end

---@class ferry.ndjson
ferry.ndjson = {}

---@param input ferry.Input
---@param opts? ferry.ReadOptions
---@return ferry.RowSource
function ferry.ndjson.reader(input, opts) end

---@param output ferry.Output
---@param opts? ferry.JsonWriteOptions
---@return ferry.RowSink
function ferry.ndjson.writer(output, opts) end

---@class ferry.xlsx
ferry.xlsx = {}

---@param input ferry.Input
---@param opts? ferry.XlsxReadOptions
---@return ferry.RowSource
function ferry.xlsx.reader(input, opts) end

---@param output ferry.Output
---@param opts? ferry.XlsxWriteOptions
---@return ferry.RowSink
function ferry.xlsx.writer(output, opts) end

---@class ferry.sql
ferry.sql = {}

---The statements of a `.sql` file, for `db:run`.
---@param input ferry.Input
---@param opts? { name?: string }
---@return ferry.SqlScript
function ferry.sql.reader(input, opts) end

---@param output ferry.Output
---@param opts ferry.SqlWriteOptions
---@return ferry.RowSink
function ferry.sql.writer(output, opts) end

---@class ferry.SqlScript
local SqlScript = {}

---An iterator of `sql, line`.
---@return fun(): string?, integer?
function SqlScript:statements() end

---@class ferry.zip
ferry.zip = {}

---@param output ferry.Output
---@return ferry.ZipWriter
function ferry.zip.writer(output) end

---@param input ferry.Input
---@param opts? ferry.ZipReadOptions
---@return ferry.ZipReader
function ferry.zip.reader(input, opts) end

---@class ferry.ZipWriter
local ZipWriter = {}

---Adds an entry; returns the bytes added.
---@param name string
---@param data ferry.Input
---@param opts? ferry.ZipEntryOptions
---@return integer
function ZipWriter:add(name, data, opts) end

---A writer for one entry (it ends when the next one starts or the archive closes).
---@param name string
---@param opts? ferry.ZipEntryOptions
---@return ferry.ZipEntryWriter
function ZipWriter:create(name, opts) end

---Writes the directory and closes the output.
function ZipWriter:close() end

---@class ferry.ZipReader
local ZipReader = {}

---@return { name: string, size: integer, compressed_size: integer, is_dir: boolean }[]
function ZipReader:entries() end

---Inflates an entry into a writer (and closes it); returns the bytes.
---@param name string
---@param writer ferry.Output
---@return integer
function ZipReader:extract(name, writer) end

---@param name string
---@return string
function ZipReader:read(name) end

---A Reader of the entry, for a format reader.
---@param name string
---@return ferry.Reader
function ZipReader:open(name) end

--------------------------------------------------------------------------------------------------
-- SQLite
--------------------------------------------------------------------------------------------------

---@class ferry.sqlite
ferry.sqlite = {}

---Opens (or creates) a database under the allowed roots.
---@param path string relative to the project root
---@return ferry.Db
function ferry.sqlite.open(path) end

---Copies a database consistently while others may write to it.
---@param src_path string
---@param dest_path string
function ferry.sqlite.snapshot(src_path, dest_path) end

---@class ferry.InsertOptions: ferry.WriterOptions
---@field on_conflict? ferry.OnConflict default "fail"
---@field create? boolean create the table with the source's columns if missing
---@field batch? integer commit every n rows
---@field names? string[] table column names to insert into

---A SQLite or PostgreSQL database.
---@class ferry.Db
local Db = {}

---A row source over a query (the statement is bound, not interpolated).
---@param sql string
---@param args? any[]|table<string, any> a sequence for `?`, names for `:name`
---@return ferry.RowSource
function Db:query(sql, args) end

---Executes a statement; returns the rows changed.
---@param sql string
---@param args? any[]|table<string, any>
---@return integer
function Db:exec(sql, args) end

---Runs `fn` in a transaction (a savepoint): committed when it returns, rolled back when it raises.
---@generic R
---@param fn fun(db: ferry.Db): R
---@return R
function Db:transaction(fn) end

---Inserts every row of a source.
---@param table string
---@param source ferry.RowSource
---@param opts? ferry.InsertOptions
---@return integer inserted
---@return integer skipped
function Db:insert(table, source, opts) end

---A row sink over the same insert, for `ferry.pipe`.
---@param table string
---@param opts? ferry.InsertOptions
---@return ferry.RowSink
function Db:writer(table, opts) end

---Executes a `.sql` script in one transaction.
---@param script ferry.SqlScript|ferry.Input
---@return { statements: integer, changes: integer }
function Db:run(script) end

function Db:close() end

--------------------------------------------------------------------------------------------------
-- Redis
--------------------------------------------------------------------------------------------------

---@class ferry.RedisOptions
---@field password? string
---@field username? string
---@field db? integer
---@field connect_timeout? ferry.Duration default "5s"
---@field timeout? ferry.Duration per reply, default "60s"
---@field ca? string PEM text of the CA to trust (rediss://)

---@class ferry.RedisScanOptions
---@field match? string default `*`
---@field count? integer SCAN COUNT hint, default 1000
---@field type? string
---@field progress? boolean|integer
---@field progress_from? integer

---@class ferry.RedisRestoreOptions
---@field on_conflict? "overwrite"|"skip"|"replace" default "overwrite"
---@field mode? "replace"|"skip"
---@field db? integer|"own"
---@field batch? integer commands per round trip, default 1000
---@field progress? boolean|integer

---@class ferry.RdbOptions
---@field db? integer only that database
---@field match? string only keys matching a glob
---@field types? string[] only these types
---@field progress? boolean|integer

---@class ferry.RdbCheck
---@field version integer
---@field keys integer
---@field expires integer
---@field dbs table<integer, integer>
---@field types table<integer, integer>
---@field bytes integer
---@field functions integer
---@field aux table<string, string>
---@field checksum "verified"|"disabled"|"absent"

---@class ferry.PostgresOptions
---@field password? string wins over the URL's
---@field sslmode? "disable"|"prefer"|"require"|"verify-ca"|"verify-full" every mode that encrypts verifies the certificate
---@field ca_file? string PEM file of the CA(s) the server's certificate must chain to
---@field connect_timeout? string default "10s"
---@field statement_timeout? string the server's statement_timeout for the session
---@field fetch_rows? integer rows per cursor fetch (default 2000)

---PostgreSQL: a Db with the SQLite Db's methods (`$1` placeholders; `run` executes `.sql` scripts).
---@class ferry.postgres
ferry.postgres = {}

---Connects (TLS verified unless `sslmode = "disable"`).
---@param url_or_name string `postgres://user[:password]@host[:port]/database[?sslmode=...]` or a name from `[databases.NAME]`
---@param opts? ferry.PostgresOptions
---@return ferry.Db
function ferry.postgres.connect(url_or_name, opts) end

---The names of `[databases.NAME]` in ferry.toml and their kind.
---@type table<string, "postgres"|"mysql">
ferry.databases = {}

---@class ferry.redis
ferry.redis = {}

---Connects and authenticates.
---@param url string `redis://`, `rediss://`, `redis+unix://` or a server named in ferry.toml
---@param opts? ferry.RedisOptions
---@return ferry.Redis
function ferry.redis.connect(url, opts) end

---A row source over an RDB file.
---@param input ferry.Input
---@param opts? ferry.RdbOptions
---@return ferry.RowSource
function ferry.redis.rdb(input, opts) end

---Reads a whole RDB file, verifying its structure and checksum.
---@param input ferry.Input
---@return ferry.RdbCheck
function ferry.redis.check(input) end

---A row sink writing an RDB file.
---@param output ferry.Output
---@return ferry.RowSink
function ferry.redis.rdb_writer(output) end

---The oldest RDB version with that value type.
---@param type_byte integer
---@return integer?
function ferry.redis.min_version(type_byte) end

---@param type_byte integer
---@return string?
function ferry.redis.type_name(type_byte) end

---A Redis connection.
---@class ferry.Redis
local Redis = {}

---One command; an error reply raises.
---@param name string
---@param ... string|number
---@return any
function Redis:call(name, ...) end

---Commands in one round trip; an error reply is an entry `{ err = "message" }`.
---@param commands (string|number)[][]
---@param opts? { atomic?: boolean }
---@return any[]
function Redis:pipeline(commands, opts) end

---A row source of the keys of the connection's database.
---@param opts? ferry.RedisScanOptions
---@return ferry.RowSource
function Redis:scan(opts) end

---A row sink writing each row with RESTORE.
---@param opts? ferry.RedisRestoreOptions
---@return ferry.RowSink
function Redis:restore(opts) end

---The server's point-in-time RDB snapshot, streamed into `writer`; returns the bytes.
---@param writer ferry.Writer
---@return integer
function Redis:snapshot(writer) end

---@return integer?
function Redis:rdb_version() end

---The redacted URL.
---@return string
function Redis:url() end

function Redis:close() end

--------------------------------------------------------------------------------------------------
-- HTTP
--------------------------------------------------------------------------------------------------

---@class ferry.HttpOptions
---@field headers? table<string, string>
---@field query? table<string, string|number|(string|number)[]>
---@field json? any sent as JSON
---@field body? string|ferry.Reader
---@field into? ferry.Writer the body is streamed into it
---@field timeout? ferry.Duration limit on the whole exchange (1ms to 7d)
---@field idle_timeout? ferry.Duration default "60s"
---@field retries? integer 0 to 10
---@field backoff? ferry.Duration default "500ms"
---@field accept? integer[] statuses returned as answers rather than raised
---@field progress? boolean

---@class ferry.HttpResponse
---@field status integer
---@field ok boolean 2xx
---@field headers table<string, string> names in lowercase
---@field url string after redirects
---@field bytes integer body size
---@field body string? `nil` with `into`
local HttpResponse = {}

---The body decoded as JSON (an error of kind `data` when it is not JSON).
---@return any
function HttpResponse:json() end

---@class ferry.http
ferry.http = {}

---@param method "GET"|"POST"|"PUT"|"PATCH"|"DELETE"|"HEAD"|"OPTIONS"
---@param url string
---@param opts? ferry.HttpOptions
---@return ferry.HttpResponse
function ferry.http.request(method, url, opts) end

---@param url string
---@param opts? ferry.HttpOptions
---@return ferry.HttpResponse
function ferry.http.get(url, opts) end

---@param url string
---@param opts? ferry.HttpOptions
---@return ferry.HttpResponse
function ferry.http.post(url, opts) end

---@param url string
---@param opts? ferry.HttpOptions
---@return ferry.HttpResponse
function ferry.http.put(url, opts) end

---@param url string
---@param opts? ferry.HttpOptions
---@return ferry.HttpResponse
function ferry.http.patch(url, opts) end

---@param url string
---@param opts? ferry.HttpOptions
---@return ferry.HttpResponse
function ferry.http.delete(url, opts) end

---@param url string
---@param opts? ferry.HttpOptions
---@return ferry.HttpResponse
function ferry.http.head(url, opts) end

--------------------------------------------------------------------------------------------------
-- MySQL and MariaDB
--------------------------------------------------------------------------------------------------

---@class ferry.mysql
ferry.mysql = {}

---@class ferry.MysqlOptions
---@field user? string overrides the URL's user
---@field password? string overrides the URL's password (prefer `ctx.secret(...)`)
---@field database? string overrides the URL's path
---@field ssl_mode? "disabled"|"preferred"|"required"|"verify_ca"|"verify_identity" default "preferred"
---@field ca_file? string PEM file under the allowed roots the server's certificate must chain to
---@field connect_timeout? string default "10s"
---@field timeout? string each read and write on the connection; default none

---@class ferry.MysqlInsertOptions: ferry.InsertOptions
---@field bulk? "auto"|"load_data"|"insert" default "auto": LOAD DATA LOCAL INFILE, else multi-row INSERTs

---A connection to a MySQL or MariaDB server: the SQLite Db's methods, over one connection.
---@class ferry.MysqlDb
local MysqlDb = {}

---A row source streaming the rows of a query (the statement is bound, not interpolated).
---@param sql string
---@param args? any[]|table<string, any> a sequence for `?`, names for `:name`
---@return ferry.RowSource
function MysqlDb:query(sql, args) end

---Executes a statement.
---@param sql string
---@param args? any[]|table<string, any>
---@return integer changed
---@return integer? last_insert_id
function MysqlDb:exec(sql, args) end

---Runs `fn` in a transaction (a savepoint when nested): committed when it returns, rolled back when it raises.
---@generic R
---@param fn fun(db: ferry.MysqlDb): R
---@return R
function MysqlDb:transaction(fn) end

---Inserts every row of a source (LOAD DATA LOCAL INFILE, else multi-row INSERTs).
---@param table string
---@param source ferry.RowSource
---@param opts? ferry.MysqlInsertOptions
---@return integer inserted
---@return integer skipped
---@return "load_data"|"insert" method
function MysqlDb:insert(table, source, opts) end

---A row sink over the same insert, for `ferry.pipe`.
---@param table string
---@param opts? ferry.MysqlInsertOptions
---@return ferry.RowSink
function MysqlDb:writer(table, opts) end

---Executes a `.sql` script in one transaction (MySQL still commits at each DDL statement).
---@param script ferry.SqlScript|ferry.Input
---@return { statements: integer, changes: integer }
function MysqlDb:run(script) end

---The server's id of the connection.
---@return integer
function MysqlDb:connection_id() end

function MysqlDb:close() end

---Connects to a MySQL or MariaDB server.
---@param url string `mysql://[user[:password]@]host[:port][/database][?ssl-mode=...]`
---@param opts? ferry.MysqlOptions
---@return ferry.MysqlDb
function ferry.mysql.connect(url, opts) end

return ferry
