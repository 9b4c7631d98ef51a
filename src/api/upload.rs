//! `POST /api/v1/jobs/{name}/upload`: a multipart file (field `file`) lands in the job's watch
//! folder and starts its run.
//!
//! The upload is streamed to a temp file under `<watch>/.ferry/uploads/` with the size limit
//! enforced while it arrives (413 beyond), synced, then renamed into `processing/` under its
//! sanitised name and claimed at once, so the folder scanner never sees a partial upload.

use axum::Json;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use tokio::io::AsyncWriteExt;

use super::wire::{ErrorBody, FileBytes, Uploaded};
use super::{ApiError, ApiState};
use crate::jobs::watch::WatchDirs;

/// Reduces an uploaded file name to a plain file name: no folders, no leading dots, no
/// control or reserved characters.
pub fn sanitize(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = base
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '<' | '>' | ':' | '"' | '|' | '?' | '*'))
        .collect();
    let trimmed = cleaned.trim().trim_start_matches('.').trim();
    let mut out: String = trimmed.chars().take(200).collect();
    if out.is_empty() {
        out = "upload".into();
    }
    out
}

/// The body of `POST /api/v1/jobs/{name}/upload`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Only its schema is used: the body is read as a stream.
pub struct UploadForm {
    /// The file.
    file: FileBytes,
}

/// Receives the upload and starts its run.
#[utoipa::path(post, path = "/api/v1/jobs/{name}/upload",
    summary = "Upload a file into the job's watch folder and start its run",
    params(("name" = String, Path, description = "job name")),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 202, description = "Accepted", body = Uploaded), (status = "default", description = "An error", body = ErrorBody)))]
pub async fn upload(
    State(state): State<ApiState>,
    Path(job): Path<String>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<Uploaded>), ApiError> {
    let mut multipart = multipart.map_err(|e| {
        let given = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none");
        ApiError::unsupported_media_type(format!(
            "expected a multipart/form-data body with a `file` field, got content type {given:?} ({})",
            e.body_text().to_lowercase()
        ))
    })?;
    let config = state.handle.config.clone();
    let spec = state.handle.dispatcher.spec(&job).ok_or_else(|| {
        ApiError::not_found(format!("job {job:?} does not exist or is not loaded"))
    })?;
    let watch = spec.watch.clone().ok_or_else(|| {
        ApiError::bad_request(format!(
            "job {job:?} has no watch folder; uploads land in a job's watch folder"
        ))
    })?;
    let max = config.api.max_upload;
    // How much of an upload that is over the limit is still read, to answer it cleanly.
    const DRAIN_LIMIT: u64 = 8 << 20;
    let too_large = || {
        ApiError::too_large(format!(
            "upload larger than the limit of {max} bytes ([api] max_upload)"
        ))
    };
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > max.saturating_add(64 * 1024)
    {
        return Err(too_large());
    }
    let dirs = WatchDirs::new(&config, &watch);
    let uploads = dirs.dir.join(crate::jobs::watch::FERRY_DIR).join("uploads");
    dirs.create()
        .and_then(|_| std::fs::create_dir_all(&uploads))
        .map_err(ApiError::internal)?;
    loop {
        let field = multipart
            .next_field()
            .await
            .map_err(|e| ApiError::bad_request(format!("malformed multipart body: {e}")))?;
        let Some(mut field) = field else {
            return Err(ApiError::bad_request("multipart field `file` is missing"));
        };
        if field.name() != Some("file") {
            continue;
        }
        let name = sanitize(field.file_name().unwrap_or("upload"));
        let temp = uploads.join(format!(".{}.{}.part", name, fastrand::u64(..)));
        let mut file = tokio::fs::File::create(&temp)
            .await
            .map_err(ApiError::internal)?;
        let mut size: u64 = 0;
        let result: Result<(), ApiError> = async {
            while let Some(chunk) = field.chunk().await.map_err(|e| {
                ApiError::bad_request(format!("upload interrupted or malformed: {e}"))
            })? {
                size += chunk.len() as u64;
                if size > max {
                    // Read (and drop) what the client is still sending, up to a bound, so that
                    // it gets the 413 instead of a connection closed under its upload.
                    let mut drained: u64 = 0;
                    while drained < DRAIN_LIMIT {
                        match field.chunk().await {
                            Ok(Some(c)) => drained += c.len() as u64,
                            _ => break,
                        }
                    }
                    return Err(too_large());
                }
                file.write_all(&chunk).await.map_err(ApiError::internal)?;
            }
            file.sync_all().await.map_err(ApiError::internal)?;
            Ok(())
        }
        .await;
        drop(file);
        if let Err(e) = result {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(e);
        }
        let dispatcher = state.handle.dispatcher.clone();
        let processing = dirs.processing.clone();
        let submitted = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
            let target = land(&temp, &processing, &name).map_err(ApiError::internal)?;
            let s = dispatcher.claim_file(&spec, &target)?;
            Ok((s, target))
        })
        .await
        .map_err(ApiError::internal)??;
        let (s, target) = submitted;
        return Ok((
            StatusCode::ACCEPTED,
            Json(Uploaded {
                id: s.id,
                state: s.state,
                file: config.display_path(&target),
                size,
            }),
        ));
    }
}

/// Renames a finished upload into `dir` as `name` (`name.1`, ... when taken).
fn land(
    temp: &std::path::Path,
    dir: &std::path::Path,
    name: &str,
) -> std::io::Result<std::path::PathBuf> {
    let mut target = dir.join(name);
    let mut n = 1;
    while target.exists() {
        target = dir.join(format!("{name}.{n}"));
        n += 1;
    }
    std::fs::rename(temp, &target)?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::sanitize;

    #[test]
    fn names_are_reduced_to_plain_file_names() {
        let cases = [
            ("orders.csv", "orders.csv"),
            ("../../etc/passwd", "passwd"),
            ("/abs/path/x.json", "x.json"),
            ("C:\\Users\\me\\evil.csv", "evil.csv"),
            ("..", "upload"),
            (".hidden", "hidden"),
            ("", "upload"),
            ("a\u{0}b|c?.csv", "abc.csv"),
        ];
        for (input, want) in cases {
            assert_eq!(sanitize(input), want, "{input:?}");
        }
    }
}
