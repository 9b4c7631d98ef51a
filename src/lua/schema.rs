//! Declarative option checks: `ferry.schema(name, fields)` → Schema (`schema:check(opts)`),
//! `ferry.options(opts, schema_or_fields)`, and the shared vocabularies (`ferry.vocab`).
//!
//! One mechanism checks the options of host functions (through [`Vocab`] and
//! [`choice_error`]) and of plugins and scripts (through schemas): an unknown option, a value of
//! the wrong type or a value outside an enum is an error that names the option, what is allowed
//! and the script line that passed it, before anything is done.
//!
//! A setting has one vocabulary everywhere ([`ON_ERROR`], [`ON_CONFLICT`]); values match without
//! regard to case, so the reference services' upper-case spellings (`SKIP`, `OVERWRITE`,
//! `CONTINUE`, `FAST_FAIL`) work, and older spellings (`fail`, `fast_fail`, `replace`) are
//! aliases.

use std::collections::BTreeMap;

use mlua::{AnyUserData, Function, Lua, MultiValue, Table, UserData, UserDataMethods, Value};

use super::host_error::{HostError, Kind, caller_location};

/// The values a setting takes: canonical names and the other spellings accepted for them.
#[derive(Debug)]
pub(crate) struct Vocab {
    /// The setting, for messages (`on_error`).
    pub name: &'static str,
    /// The canonical values, in the order messages list them.
    pub values: &'static [&'static str],
    /// Other spellings (compared without regard to case) and the value each means.
    pub aliases: &'static [(&'static str, &'static str)],
}

/// What to do when one item (a row, a file, a key) fails: stop at once, or record it and go on.
pub(crate) const ON_ERROR: Vocab = Vocab {
    name: "on_error",
    values: &["fail_fast", "continue"],
    aliases: &[("fast_fail", "fail_fast"), ("fail", "fail_fast")],
};

/// What to do with an item that exists at the destination.
pub(crate) const ON_CONFLICT: Vocab = Vocab {
    name: "on_conflict",
    values: &["skip", "overwrite", "fail"],
    aliases: &[("replace", "overwrite")],
};

/// The shared vocabularies by name, as `enum = "on_error"` in a schema refers to them.
const VOCABS: &[&Vocab] = &[&ON_ERROR, &ON_CONFLICT];

impl Vocab {
    /// The canonical value `given` means, if any.
    pub(crate) fn resolve(&self, given: &str) -> Option<&'static str> {
        let lower = given.trim().to_ascii_lowercase();
        self.values
            .iter()
            .copied()
            .find(|v| *v == lower)
            .or_else(|| {
                self.aliases
                    .iter()
                    .find(|(a, _)| *a == lower)
                    .map(|(_, v)| *v)
            })
    }

    fn allowed(&self) -> String {
        allowed_text(
            &self
                .values
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>(),
            &self
                .aliases
                .iter()
                .map(|(a, _)| a.to_string())
                .collect::<Vec<_>>(),
        )
    }
}

fn allowed_text(values: &[String], aliases: &[String]) -> String {
    let list = values
        .iter()
        .map(|v| format!("{v:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let upper = values
        .iter()
        .map(|v| v.to_ascii_uppercase())
        .collect::<Vec<_>>()
        .join(", ");
    if aliases.is_empty() {
        format!("one of {list} (any case: {upper})")
    } else {
        format!(
            "one of {list} (any case: {upper}; also {})",
            aliases
                .iter()
                .map(|a| format!("{a:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// The message for a value outside a vocabulary: `FUNC: option `KEY`: expected one of ...`.
pub(crate) fn choice_error(func: &str, key: &str, vocab: &Vocab, got: &str) -> String {
    format!(
        "{func}: option `{key}`: expected {}, got {got:?}",
        vocab.allowed()
    )
}

/// The value types of a schema field.
#[derive(Debug, Clone, PartialEq)]
enum FieldType {
    Any,
    String,
    Integer,
    Number,
    Boolean,
    Table,
    Function,
    /// A time (RFC 3339 with any offset, a date, epoch seconds) → epoch seconds.
    Time,
    /// A store name or URL, or a store object.
    Store,
    /// A sequence whose items have this type.
    List(Box<FieldType>),
}

impl FieldType {
    const NAMES: &'static str =
        "any, string, integer, number, boolean, table, function, time, store, list";

    fn parse(name: &str, items: Option<FieldType>) -> Option<FieldType> {
        Some(match name {
            "any" => FieldType::Any,
            "string" => FieldType::String,
            "integer" => FieldType::Integer,
            "number" => FieldType::Number,
            "boolean" => FieldType::Boolean,
            "table" => FieldType::Table,
            "function" => FieldType::Function,
            "time" => FieldType::Time,
            "store" => FieldType::Store,
            "list" => FieldType::List(Box::new(items.unwrap_or(FieldType::Any))),
            _ => return None,
        })
    }

    fn describe(&self) -> String {
        match self {
            FieldType::Any => "any value".into(),
            FieldType::String => "a string".into(),
            FieldType::Integer => "an integer".into(),
            FieldType::Number => "a number".into(),
            FieldType::Boolean => "true or false".into(),
            FieldType::Table => "a table".into(),
            FieldType::Function => "a function".into(),
            FieldType::Time => {
                "a time (RFC 3339 with an offset, a date like \"2026-01-31\" or epoch seconds)"
                    .into()
            }
            FieldType::Store => "a store name, URL or store object".into(),
            FieldType::List(item) => match **item {
                FieldType::Any => "a list".into(),
                ref t => format!("a list of {}", plural(&t.describe())),
            },
        }
    }

    /// Checks (and for times, converts) a value; the error says what was expected.
    fn check(&self, v: Value) -> Result<Value, String> {
        let bad = |want: &FieldType, v: &Value| {
            Err(format!(
                "expected {}, got {}",
                want.describe(),
                v.type_name()
            ))
        };
        match (self, v) {
            (FieldType::Any, v) => Ok(v),
            (FieldType::String, v @ Value::String(_)) => Ok(v),
            (FieldType::Integer, v @ Value::Integer(_)) => Ok(v),
            (FieldType::Integer, Value::Number(n)) if n.fract() == 0.0 && n.abs() < 9.0e15 => {
                Ok(Value::Integer(n as i64))
            }
            (FieldType::Number, v @ (Value::Integer(_) | Value::Number(_))) => Ok(v),
            (FieldType::Boolean, v @ Value::Boolean(_)) => Ok(v),
            (FieldType::Table, v @ Value::Table(_)) => Ok(v),
            (FieldType::Function, v @ Value::Function(_)) => Ok(v),
            (FieldType::Store, v @ (Value::String(_) | Value::UserData(_) | Value::Table(_))) => {
                Ok(v)
            }
            (FieldType::Time, v @ (Value::String(_) | Value::Integer(_) | Value::Number(_))) => {
                super::time::instant_of(&v, "time")
                    .map(|t| super::time::epoch_value(&t))
                    .map_err(|e| {
                        let text = e.to_string();
                        text.strip_prefix("time: ").unwrap_or(&text).to_string()
                    })
            }
            (FieldType::List(item), Value::Table(t)) => {
                let len = t.raw_len();
                for pair in t.clone().pairs::<Value, Value>() {
                    let (k, _) = pair.map_err(|e| e.to_string())?;
                    if !matches!(k, Value::Integer(i) if i >= 1 && (i as usize) <= len) {
                        return Err(format!(
                            "expected {}, got a table with the key {}",
                            self.describe(),
                            k.to_string().unwrap_or_else(|_| k.type_name().into())
                        ));
                    }
                }
                for i in 1..=len {
                    let v: Value = t.raw_get(i).map_err(|e| e.to_string())?;
                    let checked = item.check(v).map_err(|m| format!("item {i}: {m}"))?;
                    t.raw_set(i, checked).map_err(|e| e.to_string())?;
                }
                Ok(Value::Table(t))
            }
            (want, v) => bad(want, &v),
        }
    }
}

fn plural(what: &str) -> String {
    let bare = what
        .strip_prefix("a ")
        .or_else(|| what.strip_prefix("an "))
        .unwrap_or(what);
    format!("{bare}s")
}

/// The allowed values of an enum field.
#[derive(Debug)]
enum Choices {
    Shared(&'static Vocab),
    Own {
        values: Vec<String>,
        aliases: BTreeMap<String, String>,
    },
}

impl Choices {
    fn resolve(&self, given: &str) -> Option<String> {
        match self {
            Choices::Shared(v) => v.resolve(given).map(str::to_string),
            Choices::Own { values, aliases } => {
                let lower = given.trim().to_ascii_lowercase();
                values
                    .iter()
                    .find(|v| v.to_ascii_lowercase() == lower)
                    .cloned()
                    .or_else(|| aliases.get(&lower).cloned())
            }
        }
    }

    fn allowed(&self) -> String {
        match self {
            Choices::Shared(v) => v.allowed(),
            Choices::Own { values, aliases } => {
                allowed_text(values, &aliases.keys().cloned().collect::<Vec<_>>())
            }
        }
    }
}

/// One option of a schema.
#[derive(Debug)]
struct Field {
    ty: FieldType,
    choices: Option<Choices>,
    default: Value,
    required: bool,
    /// This key is another name of that option.
    alias_of: Option<String>,
}

/// A compiled schema: the options of one function.
#[derive(Debug)]
pub(crate) struct Schema {
    name: String,
    fields: BTreeMap<String, Field>,
}

/// Where scripts' errors point: the plugins folder's label, to skip plugin frames.
struct PluginsLabel(String);

fn invalid(lua: &Lua, message: String) -> mlua::Error {
    let label = lua
        .app_data_ref::<PluginsLabel>()
        .map(|l| l.0.clone())
        .unwrap_or_else(|| "plugins".into());
    HostError::new(Kind::Invalid, message)
        .at(caller_location(lua, &label))
        .into_lua()
}

impl Schema {
    /// Compiles `fields` (`name = "type"` or `name = { type, enum, aliases, default,
    /// required, items, alias_of, description }`); a mistake in the schema itself is an error
    /// too.
    fn compile(lua: &Lua, name: &str, fields: &Table) -> mlua::Result<Schema> {
        let mut out = BTreeMap::new();
        let fail = |m: String| invalid(lua, format!("ferry.schema({name:?}): {m}"));
        for pair in fields.pairs::<Value, Value>() {
            let (k, spec) = pair?;
            let Value::String(key) = k else {
                return Err(fail(format!(
                    "option names must be strings, got a {} key",
                    k.type_name()
                )));
            };
            let key = key.to_str()?.to_string();
            let field = match spec {
                Value::String(t) => {
                    let t = t.to_str()?;
                    Field {
                        ty: FieldType::parse(&t, None).ok_or_else(|| {
                            fail(format!(
                                "option `{key}`: unknown type {:?}; the types are: {}",
                                &*t,
                                FieldType::NAMES
                            ))
                        })?,
                        choices: None,
                        default: Value::Nil,
                        required: false,
                        alias_of: None,
                    }
                }
                Value::Table(t) => Self::field(lua, &key, &t).map_err(&fail)?,
                other => {
                    return Err(fail(format!(
                        "option `{key}`: expected a type name or a table like {{ type = \"string\" }}, got {}",
                        other.type_name()
                    )));
                }
            };
            out.insert(key, field);
        }
        for (key, f) in &out {
            if let Some(target) = &f.alias_of
                && !out.contains_key(target)
            {
                return Err(fail(format!(
                    "option `{key}`: alias_of names `{target}`, which is not an option"
                )));
            }
        }
        Ok(Schema {
            name: name.to_string(),
            fields: out,
        })
    }

    fn field(lua: &Lua, key: &str, t: &Table) -> Result<Field, String> {
        const KEYS: &[&str] = &[
            "type",
            "enum",
            "aliases",
            "default",
            "required",
            "items",
            "alias_of",
            "description",
        ];
        for pair in t.pairs::<Value, Value>() {
            let (k, _) = pair.map_err(|e| e.to_string())?;
            let name = k.to_string().unwrap_or_default();
            if !KEYS.contains(&name.as_str()) {
                return Err(format!(
                    "option `{key}`: unknown schema key `{name}`; expected: {}",
                    KEYS.join(", ")
                ));
            }
        }
        let text = |k: &str| -> Result<Option<String>, String> {
            match t.raw_get::<Value>(k).map_err(|e| e.to_string())? {
                Value::Nil => Ok(None),
                Value::String(s) => Ok(Some(s.to_string_lossy())),
                other => Err(format!(
                    "option `{key}`: `{k}` must be a string, got {}",
                    other.type_name()
                )),
            }
        };
        let items = match text("items")? {
            None => None,
            Some(i) => Some(
                FieldType::parse(&i, None)
                    .ok_or_else(|| format!("option `{key}`: unknown item type {i:?}"))?,
            ),
        };
        let choices = match t.raw_get::<Value>("enum").map_err(|e| e.to_string())? {
            Value::Nil => None,
            Value::String(s) => {
                let n = s.to_string_lossy();
                Some(Choices::Shared(
                    VOCABS
                        .iter()
                        .copied()
                        .find(|v| v.name == n)
                        .ok_or_else(|| {
                            format!(
                                "option `{key}`: unknown vocabulary {n:?}; the shared ones are: {}",
                                VOCABS.iter().map(|v| v.name).collect::<Vec<_>>().join(", ")
                            )
                        })?,
                ))
            }
            Value::Table(list) => {
                let mut values = Vec::new();
                for v in list.sequence_values::<String>() {
                    values.push(v.map_err(|_| {
                        format!("option `{key}`: `enum` must be a list of strings")
                    })?);
                }
                let mut aliases = BTreeMap::new();
                match t.raw_get::<Value>("aliases").map_err(|e| e.to_string())? {
                    Value::Nil => {}
                    Value::Table(a) => {
                        for pair in a.pairs::<String, String>() {
                            let (from, to) = pair.map_err(|_| {
                                format!("option `{key}`: `aliases` must map strings to strings")
                            })?;
                            if !values.contains(&to) {
                                return Err(format!(
                                    "option `{key}`: alias {from:?} means {to:?}, which is not in `enum`"
                                ));
                            }
                            aliases.insert(from.to_ascii_lowercase(), to);
                        }
                    }
                    other => {
                        return Err(format!(
                            "option `{key}`: `aliases` must be a table, got {}",
                            other.type_name()
                        ));
                    }
                }
                Some(Choices::Own { values, aliases })
            }
            other => {
                return Err(format!(
                    "option `{key}`: `enum` must be a list of values or a vocabulary name, got {}",
                    other.type_name()
                ));
            }
        };
        let ty = match text("type")? {
            Some(name) => FieldType::parse(&name, items).ok_or_else(|| {
                format!(
                    "option `{key}`: unknown type {name:?}; the types are: {}",
                    FieldType::NAMES
                )
            })?,
            None if choices.is_some() => FieldType::String,
            None => FieldType::Any,
        };
        let required = match t.raw_get::<Value>("required").map_err(|e| e.to_string())? {
            Value::Nil => false,
            Value::Boolean(b) => b,
            other => {
                return Err(format!(
                    "option `{key}`: `required` must be true or false, got {}",
                    other.type_name()
                ));
            }
        };
        let mut field = Field {
            ty,
            choices,
            default: Value::Nil,
            required,
            alias_of: text("alias_of")?,
        };
        let default: Value = t.raw_get("default").map_err(|e| e.to_string())?;
        if !default.is_nil() {
            field.default = field
                .value(lua, default)
                .map_err(|m| format!("option `{key}`: `default`: {m}"))?;
        }
        Ok(field)
    }

    /// Checks `opts` (nil or a table) and returns a new table: every option checked, enum
    /// values in their canonical spelling, times as epoch seconds, aliases under their option's
    /// name, defaults filled in.
    fn check(&self, lua: &Lua, opts: Value) -> mlua::Result<Table> {
        let name = &self.name;
        let given = match opts {
            Value::Nil => None,
            Value::Table(t) => Some(t),
            other => {
                return Err(invalid(
                    lua,
                    format!("{name}: options must be a table, got {}", other.type_name()),
                ));
            }
        };
        let out = lua.create_table()?;
        let mut from: BTreeMap<String, String> = BTreeMap::new();
        if let Some(t) = &given {
            for pair in t.pairs::<Value, Value>() {
                let (k, v) = pair?;
                let key = match &k {
                    Value::String(s) => s.to_str()?.to_string(),
                    other => {
                        return Err(invalid(
                            lua,
                            format!(
                                "{name}: option names are strings, got a {} key; the options are: {}",
                                other.type_name(),
                                self.known()
                            ),
                        ));
                    }
                };
                let Some(field) = self.fields.get(&key) else {
                    return Err(invalid(
                        lua,
                        format!(
                            "{name}: unknown option `{key}`; the options are: {}",
                            self.known()
                        ),
                    ));
                };
                let target = field.alias_of.clone().unwrap_or_else(|| key.clone());
                let checked_by = self.fields.get(&target).unwrap_or(field);
                let value = checked_by
                    .value(lua, v)
                    .map_err(|m| invalid(lua, format!("{name}: option `{key}`: {m}")))?;
                if let Some(other) = from.get(&target) {
                    return Err(invalid(
                        lua,
                        format!(
                            "{name}: options `{other}` and `{key}` are the same setting; give one"
                        ),
                    ));
                }
                from.insert(target.clone(), key);
                out.raw_set(target, value)?;
            }
        }
        for (key, field) in &self.fields {
            if field.alias_of.is_some() || from.contains_key(key) {
                continue;
            }
            if field.required {
                return Err(invalid(
                    lua,
                    format!("{name}: option `{key}` is required ({})", field.expected()),
                ));
            }
            if !field.default.is_nil() {
                out.raw_set(key.as_str(), field.default.clone())?;
            }
        }
        Ok(out)
    }

    fn known(&self) -> String {
        self.fields.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

impl Field {
    fn expected(&self) -> String {
        match &self.choices {
            Some(c) => c.allowed(),
            None => self.ty.describe(),
        }
    }

    fn value(&self, lua: &Lua, v: Value) -> Result<Value, String> {
        let v = self.ty.check(v)?;
        let Some(choices) = &self.choices else {
            return Ok(v);
        };
        let Value::String(s) = &v else {
            return Err(format!(
                "expected {}, got {}",
                choices.allowed(),
                v.type_name()
            ));
        };
        let given = s.to_string_lossy();
        match choices.resolve(&given) {
            Some(canonical) => lua
                .create_string(&canonical)
                .map(Value::String)
                .map_err(|e| e.to_string()),
            None => Err(format!("expected {}, got {given:?}", choices.allowed())),
        }
    }
}

impl UserData for Schema {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("check", |lua, this, opts: Value| this.check(lua, opts));
        // wrap(fn): a function that checks its last declared parameter (the options) with this
        // schema, then calls `fn` with the checked table. The wrapper is a host function, so
        // the script that calls it stays on the stack even in a tail call (`return
        // export.run(ctx, {...})`): errors name that script's line.
        methods.add_function("wrap", |lua, (ud, f): (AnyUserData, Function)| {
            ud.borrow::<Schema>()?;
            let pos = usize::from(f.info().num_params).max(1);
            lua.create_function(move |lua, args: MultiValue| {
                let mut args: Vec<Value> = args.into_iter().collect();
                if args.len() < pos {
                    args.resize(pos, Value::Nil);
                }
                let checked = ud.borrow::<Schema>()?.check(lua, args[pos - 1].clone())?;
                args[pos - 1] = Value::Table(checked);
                f.call::<MultiValue>(MultiValue::from_iter(args))
            })
        });
        methods.add_meta_method("__tostring", |_, this, ()| {
            Ok(format!("schema {} ({})", this.name, this.known()))
        });
    }
}

/// Registers `ferry.schema`, `ferry.options` and `ferry.vocab`.
pub(crate) fn register(lua: &Lua, ferry: &Table, plugins_label: &str) -> mlua::Result<()> {
    lua.set_app_data(PluginsLabel(plugins_label.to_string()));
    ferry.set(
        "schema",
        lua.create_function(|lua, (name, fields): (String, Table)| {
            Schema::compile(lua, &name, &fields)
        })?,
    )?;
    ferry.set(
        "options",
        lua.create_function(|lua, (opts, schema): (Value, Value)| match schema {
            Value::UserData(ud) => schema_of(lua, &ud)?.check(lua, opts),
            Value::Table(fields) => Schema::compile(lua, "options", &fields)?.check(lua, opts),
            other => Err(invalid(
                lua,
                format!(
                    "ferry.options(opts, schema): schema must be a ferry.schema or a table of fields, got {}",
                    other.type_name()
                ),
            )),
        })?,
    )?;
    let vocab = lua.create_table()?;
    for v in VOCABS {
        vocab.set(v.name, lua.create_sequence_from(v.values.iter().copied())?)?;
    }
    ferry.set("vocab", vocab)
}

fn schema_of(lua: &Lua, ud: &AnyUserData) -> mlua::Result<mlua::UserDataRef<Schema>> {
    ud.borrow::<Schema>().map_err(|_| {
        invalid(
            lua,
            "ferry.options(opts, schema): schema must be a ferry.schema or a table of fields"
                .into(),
        )
    })
}
