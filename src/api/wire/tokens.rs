//! API tokens and the audit log as the API shows them.

use serde::Serialize;
use utoipa::ToSchema;

use crate::history::{AuditEntry, TokenRecord, format_time};

/// A named token (never its value).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Token)]
pub struct TokenView {
    /// Its name.
    pub name: String,
    /// `read`, `run` or `admin`.
    pub scope: String,
    /// When it was created.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When it was last used (to the minute), if ever.
    #[schema(format = DateTime)]
    pub last_used: Option<String>,
}

impl From<&TokenRecord> for TokenView {
    fn from(t: &TokenRecord) -> TokenView {
        TokenView {
            name: t.name.clone(),
            scope: t.scope.clone(),
            created_at: format_time(&t.created_at),
            last_used: t.last_used.as_ref().map(format_time),
        }
    }
}

/// `GET /api/v1/tokens`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    /// Every token, by name.
    pub items: Vec<TokenView>,
}

/// `POST /api/v1/tokens` (201): the only time the token is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenCreated {
    /// Its name.
    pub name: String,
    /// Its scope.
    pub scope: String,
    /// The token.
    pub token: String,
}

/// `DELETE /api/v1/tokens/{name}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenRevoked {
    /// Its name.
    pub name: String,
    /// Always true.
    pub revoked: bool,
}

/// An entry of the audit log.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AuditEntry)]
pub struct AuditView {
    /// Its sequence number.
    pub id: i64,
    /// When.
    #[schema(format = DateTime)]
    pub at: String,
    /// Who: a token's name.
    pub actor: String,
    /// From where.
    pub source: String,
    /// What, such as `job.write` or `run.trigger`.
    pub action: String,
    /// On what.
    pub target: String,
    /// The HTTP status answered.
    pub status: u16,
}

impl From<&AuditEntry> for AuditView {
    fn from(a: &AuditEntry) -> AuditView {
        AuditView {
            id: a.id,
            at: format_time(&a.at),
            actor: a.actor.clone(),
            source: a.source.clone(),
            action: a.action.clone(),
            target: a.target.clone(),
            status: a.status,
        }
    }
}

/// `GET /api/v1/audit`: a page of the audit log, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// The entries.
    pub items: Vec<AuditView>,
    /// Page number, from 1.
    pub page: u64,
    /// Entries per page.
    pub page_size: u64,
    /// Entries in all.
    pub total: u64,
}
