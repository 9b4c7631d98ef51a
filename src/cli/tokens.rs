//! `ferry tokens create|list|revoke` (named API tokens, on the local history: whoever can write
//! the project's history manages its tokens) and `ferry audit` (the audit log, read locally).

use std::process::ExitCode;

use super::open_history;
use super::table::Table;
use super::when;
use crate::api::auth::{self, LOCAL, Scope};
use crate::config::Config;
use crate::history::NewAudit;

/// Arguments of `ferry tokens`.
#[derive(Debug, clap::Args)]
pub struct TokensArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: TokensCommand,
}

/// The scopes a token can have, for the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ScopeArg {
    /// Read jobs, runs, logs, artifacts, events and metrics.
    Read,
    /// Also trigger, cancel, rerun, upload, pause and resume.
    Run,
    /// Also write and delete jobs, delete runs, manage tokens, read the audit log.
    Admin,
}

impl From<ScopeArg> for Scope {
    fn from(s: ScopeArg) -> Scope {
        match s {
            ScopeArg::Read => Scope::Read,
            ScopeArg::Run => Scope::Run,
            ScopeArg::Admin => Scope::Admin,
        }
    }
}

/// The `tokens` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TokensCommand {
    /// Create a named API token and print it once (only its SHA-256 is kept). Once any token
    /// exists, the API requires one.
    Create {
        /// Its name (letters, digits, `_`, `-`, `.`; at most 64).
        name: String,
        /// What it may do.
        #[arg(long, value_enum)]
        scope: ScopeArg,
    },
    /// List the tokens: name, scope, created, last used (never a token's value).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token: the API refuses it from the next request on.
    Revoke {
        /// Its name.
        name: String,
    },
}

/// Arguments of `ferry audit`.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// How many entries, newest first.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub limit: u32,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn audit_local(config: &Config, action: &str, target: &str) -> anyhow::Result<()> {
    open_history(config)?.record_audit(&NewAudit {
        actor: LOCAL,
        source: LOCAL,
        action,
        target,
        status: 0,
    })?;
    Ok(())
}

/// Runs `ferry tokens`.
pub fn tokens(config: &Config, args: TokensArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        TokensCommand::Create { name, scope } => {
            let history = open_history(config)?;
            let token = auth::create_token(&*history, &name, scope.into())
                .map_err(|e| super::Refused(e.to_string()))?;
            audit_local(config, "token.create", &name)?;
            println!("{token}");
            eprintln!(
                "token {name:?} ({}) created; it is shown only this once",
                Scope::from(scope).as_str()
            );
            Ok(ExitCode::SUCCESS)
        }
        TokensCommand::List { json } => {
            let list = open_history(config)?.tokens()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(ExitCode::SUCCESS);
            }
            let mut table = Table::new(&["NAME", "SCOPE", "CREATED", "LAST USED"]);
            for t in &list {
                table.row(vec![
                    t.name.clone(),
                    t.scope.clone(),
                    when::local_and_utc(t.created_at),
                    t.last_used.map(when::local_and_utc).unwrap_or("-".into()),
                ]);
            }
            print!("{}", table.render());
            Ok(ExitCode::SUCCESS)
        }
        TokensCommand::Revoke { name } => {
            if !open_history(config)?.revoke_token(&name)? {
                return Err(super::Refused(format!("no token named {name:?}")).into());
            }
            audit_local(config, "token.revoke", &name)?;
            eprintln!("token {name:?} revoked");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Runs `ferry audit`.
pub fn audit(config: &Config, args: AuditArgs) -> anyhow::Result<ExitCode> {
    let (items, _) = open_history(config)?.audit(args.limit, 0)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new(&["AT", "WHO", "FROM", "ACTION", "TARGET", "STATUS"]);
    for a in &items {
        table.row(vec![
            when::local_and_utc(a.at),
            a.actor.clone(),
            a.source.clone(),
            a.action.clone(),
            a.target.clone(),
            if a.status == 0 {
                "-".into()
            } else {
                a.status.to_string()
            },
        ]);
    }
    print!("{}", table.render());
    Ok(ExitCode::SUCCESS)
}
