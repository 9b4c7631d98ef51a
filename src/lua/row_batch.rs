//! Batches of rows crossing into Lua and back for the `map` of `ferry.pipe`, through the Lua C
//! API.
//!
//! The rows a map sees are the same plain tables as everywhere else (keyed by column name, null
//! left out, the `ferry.row` metatable of their source), so a map may keep them, change them
//! or return new tables. What changes is the cost: mlua's safe calls pay a lock, stack checks
//! and a reference push per field, which made a map cost ~0.8 µs per row plus ~0.5 µs per
//! column. Here a batch is built in one protected call, and read back in one call that
//! compares each field with the value its row was built from: a field the map left alone keeps
//! its original value (no string copy, no UTF-8 check), so a map that changes one field pays
//! for converting that field, and one that filters pays for looking at the fields it keeps.
//! Anything unusual on the way back (a value that is not a table, a field of a type a row
//! cannot hold) falls back to the safe path, so its result and its error are exactly those of
//! `lua_to_row`.

use std::collections::HashMap;
use std::ffi::{c_char, c_int};

use mlua::{Lua, Table, Value as LuaValue, ffi};

use super::rows::RowShape;
use crate::formats::Value;

/// How far past the last matched row the read-back looks for a returned row among the batch's
/// rows before it asks an index (maps keep order, so the next returned row is usually close).
const SCAN: usize = 16;

/// Converts batches of rows between Rust and Lua for one pipe.
pub(crate) struct BatchCodec {
    /// The metatable the rows carry.
    meta: Table,
    /// The source's column names as a sequence only this codec sees (a script may change the
    /// metatable's `columns`; the keys of new rows must not follow).
    keys: Table,
    /// The number of source columns.
    width: usize,
    /// The columns of the rows the map returns, as a sequence.
    out_keys: Table,
    /// For each output column, the source column of the same name.
    source_of: Vec<Option<usize>>,
    /// Whether the output columns are the source's, in the same order.
    same_columns: bool,
    /// The address of each row table of the batch in Lua, by position (identity only: a
    /// returned table is compared field by field, so a reused address costs speed, never
    /// correctness).
    addresses: Vec<usize>,
}

/// What the read-back gives: the rows to write, or `None` when the batch needs the safe path.
pub(crate) type ReadBack = Option<Vec<Vec<Value>>>;

impl BatchCodec {
    /// A codec for rows of `shape` mapped to rows of `out_columns`.
    pub(crate) fn new(lua: &Lua, shape: &RowShape, out_columns: &[String]) -> mlua::Result<Self> {
        let columns = shape.columns();
        let source_of = out_columns
            .iter()
            .map(|name| columns.iter().position(|c| c == name))
            .collect();
        Ok(BatchCodec {
            meta: shape.meta().clone(),
            keys: lua.create_sequence_from(columns.iter().map(String::as_str))?,
            width: columns.len(),
            out_keys: lua.create_sequence_from(out_columns.iter().map(String::as_str))?,
            source_of,
            same_columns: columns == out_columns,
            addresses: Vec::new(),
        })
    }

    /// The rows as a sequence of row tables, as `RowShape::to_lua` makes them one by one.
    pub(crate) fn encode(&mut self, lua: &Lua, rows: &[Vec<Value>]) -> mlua::Result<Table> {
        let width = self.width;
        let addresses = &mut self.addresses;
        addresses.clear();
        addresses.reserve(rows.len());
        let mut room = true;
        // SAFETY: the closure runs inside a protected call with the metatable at 1 and the
        // keys at 2; it makes room for the keys, the batch, a row, a key and a value before
        // using them. A memory error raised by Lua unwinds through this frame, which owns
        // nothing to drop: it only borrows `rows`, `room` and `addresses` (whose room is
        // reserved above, so pushing cannot reallocate).
        let batch = unsafe {
            lua.exec_raw::<LuaValue>((self.meta.clone(), self.keys.clone()), |state| {
                if ffi::lua_checkstack(state, clamp(width.saturating_add(4))) == 0 {
                    room = false;
                    ffi::lua_settop(state, 0);
                    return;
                }
                let keys = push_keys(state, width); // 3..: the column names
                let batch = keys + clamp(width); // the batch
                let row = batch + 1;
                ffi::lua_createtable(state, clamp(rows.len()), 0);
                for (i, values) in rows.iter().enumerate() {
                    ffi::lua_createtable(state, 0, clamp(width));
                    for (c, v) in values.iter().take(width).enumerate() {
                        if v.is_null() {
                            continue;
                        }
                        ffi::lua_pushvalue(state, keys + c as c_int);
                        push_value(state, v);
                        ffi::lua_rawset(state, row);
                    }
                    ffi::lua_pushvalue(state, 1);
                    ffi::lua_setmetatable(state, row);
                    addresses.push(ffi::lua_topointer(state, row) as usize);
                    ffi::lua_rawseti(state, batch, i as ffi::lua_Integer + 1);
                }
                ffi::lua_replace(state, 1);
                ffi::lua_settop(state, 1);
            })?
        };
        match batch {
            LuaValue::Table(t) if room => Ok(t),
            _ => Err(mlua::Error::runtime(format!(
                "ferry.pipe: no room on the Lua stack for rows of {width} columns"
            ))),
        }
    }

    /// Reads the rows a map returned (`out`, for a batch of `n_in` rows that were built from
    /// `orig`) in output columns. A returned row that is one of the batch's keeps the original
    /// value of every field equal to it. `None` when a value needs the safe path (which then
    /// gives the result or the error).
    pub(crate) fn decode(
        &self,
        lua: &Lua,
        out: &Table,
        n_in: usize,
        mut orig: Vec<Vec<Value>>,
    ) -> mlua::Result<ReadBack> {
        let mut result: ReadBack = None;
        let width = self.source_of.len();
        // SAFETY: with the returned sequence at 1 and the output column names at 2, the
        // closure makes room for the names, a row and a value (`lua_checkstack` reports a
        // failure instead of raising one), then uses only raw reads (`lua_rawlen`,
        // `lua_rawgeti`, `lua_rawget`, `lua_to*` on values of the matching type), none of which
        // calls a metamethod, allocates or raises an error: no Lua error can unwind through
        // the Rust values `read_back` owns.
        unsafe {
            lua.exec_raw::<()>((out.clone(), self.out_keys.clone()), |state| {
                if ffi::lua_checkstack(state, clamp(width.saturating_add(3))) != 0 {
                    let keys = push_keys(state, width);
                    result = self.read_back(state, keys, n_in, &mut orig);
                }
                ffi::lua_settop(state, 0);
            })?;
        }
        Ok(result)
    }

    /// The body of `decode`, on the Lua stack described there with the output column names
    /// from `keys` on.
    unsafe fn read_back(
        &self,
        state: *mut ffi::lua_State,
        keys: c_int,
        n_in: usize,
        orig: &mut [Vec<Value>],
    ) -> ReadBack {
        let n_out = unsafe { ffi::lua_rawlen(state, 1) }.max(n_in);
        let mut rows = Vec::with_capacity(n_out.min(n_in.max(1) * 2));
        let mut taken = vec![false; orig.len()];
        let mut cursor = 0;
        let mut index: Option<HashMap<usize, usize>> = None;
        for i in 1..=n_out {
            let ty = unsafe { ffi::lua_rawgeti(state, 1, i as ffi::lua_Integer) };
            match ty {
                ffi::LUA_TNIL => {}
                ffi::LUA_TBOOLEAN if unsafe { ffi::lua_toboolean(state, -1) } == 0 => {}
                ffi::LUA_TTABLE => {
                    let address = unsafe { ffi::lua_topointer(state, -1) } as usize;
                    let known = self
                        .find(address, &mut cursor, &mut index)
                        .filter(|&j| j < orig.len() && !taken[j]);
                    let positional = unsafe { ffi::lua_rawlen(state, -1) } > 0;
                    let row = match known {
                        Some(j) if self.same_columns && orig[j].len() == self.width => {
                            // The batch's own row: patch what the map changed in place.
                            taken[j] = true;
                            let mut row = std::mem::take(&mut orig[j]);
                            for (c, v) in row.iter_mut().enumerate() {
                                let ty = unsafe { field(state, keys, c, positional) };
                                if !unsafe { equal(state, ty, v) } {
                                    *v = unsafe { to_value(state, ty) }?;
                                }
                                unsafe { ffi::lua_pop(state, 1) };
                            }
                            row
                        }
                        _ => {
                            let base = known.map(|j| &orig[j]);
                            let mut row = Vec::with_capacity(self.source_of.len());
                            for (c, src) in self.source_of.iter().enumerate() {
                                let ty = unsafe { field(state, keys, c, positional) };
                                let before = base.zip(*src).and_then(|(r, s)| r.get(s));
                                row.push(match before {
                                    Some(v) if unsafe { equal(state, ty, v) } => v.clone(),
                                    _ => unsafe { to_value(state, ty) }?,
                                });
                                unsafe { ffi::lua_pop(state, 1) };
                            }
                            row
                        }
                    };
                    rows.push(row);
                }
                _ => return None,
            }
            unsafe { ffi::lua_pop(state, 1) };
        }
        Some(rows)
    }

    /// The position in the batch of the row table at `address`, if it is one of the batch's.
    fn find(
        &self,
        address: usize,
        cursor: &mut usize,
        index: &mut Option<HashMap<usize, usize>>,
    ) -> Option<usize> {
        let start = (*cursor).min(self.addresses.len());
        let end = (start + SCAN).min(self.addresses.len());
        if let Some(k) = self.addresses[start..end]
            .iter()
            .position(|&a| a == address)
        {
            *cursor = start + k + 1;
            return Some(start + k);
        }
        let index = index.get_or_insert_with(|| {
            self.addresses
                .iter()
                .enumerate()
                .map(|(j, &a)| (a, j))
                .collect()
        });
        let j = index.get(&address).copied()?;
        *cursor = j + 1;
        Some(j)
    }
}

/// A count as the C API's size hint (a hint only, so a huge count is capped).
fn clamp(n: usize) -> c_int {
    c_int::try_from(n).unwrap_or(c_int::MAX)
}

/// Pushes a non-null value.
unsafe fn push_value(state: *mut ffi::lua_State, v: &Value) {
    unsafe {
        match v {
            Value::Null => ffi::lua_pushnil(state),
            Value::Bool(b) => ffi::lua_pushboolean(state, c_int::from(*b)),
            Value::Int(i) => ffi::lua_pushinteger(state, *i),
            Value::Float(f) => ffi::lua_pushnumber(state, *f),
            Value::Text(s) => {
                ffi::lua_pushlstring(state, s.as_ptr() as *const c_char, s.len());
            }
            Value::Bytes(b) => {
                ffi::lua_pushlstring(state, b.as_ptr() as *const c_char, b.len());
            }
        }
    }
}

/// Pushes field `c` of the row at the top of the stack (by position in a sequence, else by the
/// name at `keys + c`) and returns its type, as `lua_to_row` reads it.
unsafe fn field(state: *mut ffi::lua_State, keys: c_int, c: usize, positional: bool) -> c_int {
    unsafe {
        if positional {
            ffi::lua_rawgeti(state, -1, c as ffi::lua_Integer + 1)
        } else {
            ffi::lua_pushvalue(state, keys + c as c_int);
            ffi::lua_rawget(state, -2)
        }
    }
}

/// Pushes the `width` names of the sequence at 2 (after the two arguments at 1 and 2, so from
/// 3 on) and returns where they start.
unsafe fn push_keys(state: *mut ffi::lua_State, width: usize) -> c_int {
    for c in 1..=width {
        unsafe { ffi::lua_rawgeti(state, 2, c as ffi::lua_Integer) };
    }
    3
}

/// The bytes of the string at the top of the stack.
unsafe fn top_bytes<'a>(state: *mut ffi::lua_State) -> &'a [u8] {
    let mut len = 0usize;
    unsafe {
        let p = ffi::lua_tolstring(state, -1, &mut len);
        std::slice::from_raw_parts(p as *const u8, len)
    }
}

/// Whether the value at the top of the stack (of type `ty`) is what `lua_to_value` would make
/// `v` from, so `v` can be kept as it is. Bytes are never equal: a UTF-8 byte string read back
/// becomes text, as on the safe path.
unsafe fn equal(state: *mut ffi::lua_State, ty: c_int, v: &Value) -> bool {
    unsafe {
        match (ty, v) {
            (ffi::LUA_TNIL, Value::Null) => true,
            (ffi::LUA_TBOOLEAN, Value::Bool(b)) => (ffi::lua_toboolean(state, -1) != 0) == *b,
            (ffi::LUA_TNUMBER, Value::Int(i)) => {
                ffi::lua_isinteger(state, -1) != 0
                    && ffi::lua_tointegerx(state, -1, std::ptr::null_mut()) == *i
            }
            (ffi::LUA_TNUMBER, Value::Float(f)) => {
                ffi::lua_isinteger(state, -1) == 0
                    && ffi::lua_tonumberx(state, -1, std::ptr::null_mut()).to_bits() == f.to_bits()
            }
            (ffi::LUA_TSTRING, Value::Text(s)) => top_bytes(state) == s.as_bytes(),
            _ => false,
        }
    }
}

/// The value at the top of the stack (of type `ty`) as `lua_to_value` converts it; `None` for
/// what only the safe path handles (light userdata, tables, functions: errors or rare cases).
unsafe fn to_value(state: *mut ffi::lua_State, ty: c_int) -> Option<Value> {
    unsafe {
        Some(match ty {
            ffi::LUA_TNIL => Value::Null,
            ffi::LUA_TBOOLEAN => Value::Bool(ffi::lua_toboolean(state, -1) != 0),
            ffi::LUA_TNUMBER if ffi::lua_isinteger(state, -1) != 0 => {
                Value::Int(ffi::lua_tointegerx(state, -1, std::ptr::null_mut()))
            }
            ffi::LUA_TNUMBER => Value::Float(ffi::lua_tonumberx(state, -1, std::ptr::null_mut())),
            ffi::LUA_TSTRING => {
                let b = top_bytes(state);
                match std::str::from_utf8(b) {
                    Ok(t) => Value::Text(t.to_owned()),
                    Err(_) => Value::Bytes(b.to_vec()),
                }
            }
            _ => return None,
        })
    }
}
