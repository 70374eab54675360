//! A small HTTP client of the publisher's API, behind the `revoke`, `cutoff`, `stats`
//! and `import` commands, and the client the tests and benchmarks use. It speaks the
//! contract of [`revocast_core::http`].
//!
//! ```no_run
//! # async fn example() -> Result<(), revocast_publisher::client::ClientError> {
//! use std::time::Duration;
//! use revocast_publisher::{Revocation, client::ApiClient};
//! let api = ApiClient::builder("http://127.0.0.1:8080")
//!     .admin_token("s3cret")
//!     .timeout(Duration::from_secs(5))
//!     .build()?;
//! let done = api.revoke(&Revocation::new("token-1", 1_767_225_600)).await?;
//! println!("durable at version {}", done.version);
//! # Ok(())
//! # }
//! ```

use std::path::Path;
use std::time::Duration;

use revocast_core::http::{
    self, AnswerError, Committed, CutoffRequest, ErrorBody, KeyRotated, Readiness, Revocation,
    RevocationBatch, RevocationStatus, RotateKeyRequest,
};

use crate::backup::{self, BackupLine};
use revocast_nats::Backoff;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// How long a call may take by default (a bulk call waits for durability).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an API call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not usable.
    #[error("bad URL {0:?}: use http://host:port")]
    Url(String),
    /// The publisher could not be reached or the answer was cut short.
    #[error("cannot reach {url}: {source}")]
    Transport {
        /// The URL.
        url: String,
        /// The cause.
        source: reqwest::Error,
    },
    /// The publisher answered with an error.
    #[error("HTTP {status} {}: {}", .body.error, .body.error_description)]
    Api {
        /// HTTP status.
        status: u16,
        /// The error body: a stable code (`invalid_jti`, `unauthorized`, ...) and why.
        body: ErrorBody,
    },
    /// The answer was not what the API documents.
    #[error("unexpected answer from the publisher (HTTP {status}): {body}")]
    Decode {
        /// HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
        /// Why it does not parse.
        source: serde_json::Error,
    },
    /// The answer to a lookup is not the authority's answer about that `jti`.
    #[error("{0}")]
    Answer(#[source] AnswerError),
}

impl ClientError {
    /// The HTTP status when the publisher answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            ClientError::Answer(AnswerError::Refused { status, .. }) => Some(*status),
            _ => None,
        }
    }
}

/// A client of one publisher's HTTP API.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

/// Builds an [`ApiClient`]: [`ApiClient::builder`].
#[derive(Debug, Clone)]
pub struct ApiClientBuilder {
    base_url: String,
    token: Option<String>,
    timeout: Duration,
}

impl ApiClientBuilder {
    /// Sends `Authorization: Bearer <token>` with every call.
    pub fn admin_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Sets or clears the admin token.
    pub fn admin_token_opt(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// How long one call may take, connection included (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The client.
    pub fn build(self) -> Result<ApiClient, ClientError> {
        let base = self.base_url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::Url(self.base_url));
        }
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .build()
            .map_err(|source| ClientError::Transport {
                url: base.clone(),
                source,
            })?;
        Ok(ApiClient {
            base,
            token: self.token,
            http,
        })
    }
}

impl ApiClient {
    /// A builder for a client of the API at `base_url` (`http://127.0.0.1:8080`).
    pub fn builder(base_url: impl Into<String>) -> ApiClientBuilder {
        ApiClientBuilder {
            base_url: base_url.into(),
            token: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// A client of the API at `base_url` with the default timeout, sending
    /// `Authorization: Bearer <token>` when a token is given.
    pub fn new(base_url: &str, token: Option<String>) -> Result<ApiClient, ClientError> {
        ApiClient::builder(base_url).admin_token_opt(token).build()
    }

    /// The API's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Sends a request; returns the status and the body.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<(u16, Vec<u8>), ClientError> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let transport = |source: reqwest::Error| ClientError::Transport {
            url: source
                .url()
                .map_or_else(|| self.base.clone(), ToString::to_string),
            source,
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(transport)?;
        Ok((status, bytes.to_vec()))
    }

    /// A 2xx answer as `T`; anything else as the error body.
    fn read<T: DeserializeOwned>(status: u16, body: &[u8]) -> Result<T, ClientError> {
        let decode = |source| ClientError::Decode {
            status,
            body: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
            source,
        };
        if (200..300).contains(&status) {
            serde_json::from_slice(body).map_err(decode)
        } else {
            match serde_json::from_slice::<ErrorBody>(body) {
                Ok(body) => Err(ClientError::Api { status, body }),
                Err(source) => Err(decode(source)),
            }
        }
    }

    async fn post<B: serde::Serialize + ?Sized, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let (status, bytes) = self.send(self.http.post(url).json(body)).await?;
        Self::read(status, &bytes)
    }

    /// `POST /v1/revocations` with one revocation.
    pub async fn revoke(&self, revocation: &Revocation) -> Result<Committed, ClientError> {
        self.post(http::REVOCATIONS, revocation).await
    }

    /// `POST /v1/revocations` with `{"revocations": [...]}`: one delta.
    pub async fn revoke_bulk(&self, revocations: &[Revocation]) -> Result<Committed, ClientError> {
        let batch = RevocationBatch {
            revocations: revocations.to_vec(),
        };
        self.post(http::REVOCATIONS, &batch).await
    }

    /// `POST /v1/cutoffs`: reject tokens of `sub` (every token when `None`) issued
    /// before `not_before`.
    pub async fn cutoff(
        &self,
        sub: Option<&str>,
        not_before: u64,
    ) -> Result<Committed, ClientError> {
        self.cutoff_of(&CutoffRequest {
            sub: sub.map(str::to_owned),
            sid: None,
            not_before,
        })
        .await
    }

    /// `POST /v1/cutoffs` with any cutoff: of a subject, of a session (`sid`), or of
    /// every token.
    pub async fn cutoff_of(&self, request: &CutoffRequest) -> Result<Committed, ClientError> {
        self.post(http::CUTOFFS, request).await
    }

    /// `POST /v1/keys/rotate`: the publisher signs with a new key from now on.
    pub async fn rotate_key(&self, request: &RotateKeyRequest) -> Result<KeyRotated, ClientError> {
        self.post(http::KEYS_ROTATE, request).await
    }

    /// `GET /v1/stats`, as JSON.
    pub async fn stats(&self) -> Result<Value, ClientError> {
        let url = format!("{}{}", self.base, http::STATS);
        let (status, bytes) = self.send(self.http.get(url)).await?;
        Self::read(status, &bytes)
    }

    /// `GET /readyz`: whether the publisher takes revocations (and why not).
    pub async fn readiness(&self) -> Result<Readiness, ClientError> {
        let url = format!("{}{}", self.base, http::READYZ);
        let (status, bytes) = self.send(self.http.get(url)).await?;
        // 503 answers with a Readiness too: not ready is an answer, not an error.
        let status = if status == 503 { 200 } else { status };
        Self::read(status, &bytes)
    }

    /// `GET /v1/revocations/{jti}`: the authority's answer, read by
    /// [`RevocationStatus::from_answer`] (`revoked` says which).
    pub async fn lookup(&self, jti: &str) -> Result<RevocationStatus, ClientError> {
        let url = format!("{}{}", self.base, http::revocation_path(jti));
        let (status, bytes) = self.send(self.http.get(url)).await?;
        RevocationStatus::from_answer(jti, status, &bytes).map_err(ClientError::Answer)
    }

    /// `GET /v1/revocations/{jti}?exp=&sub=&iat=&sid=`: the authority's answer about a
    /// token, with the subject, session and global cutoffs applied to what `query`
    /// tells of it.
    pub async fn lookup_token(
        &self,
        jti: &str,
        query: &http::TokenQuery,
    ) -> Result<RevocationStatus, ClientError> {
        let query = query.to_query_string();
        let mut url = format!("{}{}", self.base, http::revocation_path(jti));
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query);
        }
        let (status, bytes) = self.send(self.http.get(url)).await?;
        RevocationStatus::from_answer(jti, status, &bytes).map_err(ClientError::Answer)
    }
}

/// Input format of `import`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportFormat {
    /// By file extension (`.csv`; `.jsonl`, `.ndjson`, `.json`), else by content.
    Auto,
    /// One JSON object per line: `{"jti", "exp", "sub"?, "reason"?}`, and the
    /// header and cutoff lines of an export ([`crate::backup`]).
    JsonLines,
    /// `jti,exp[,sub,reason]`, with an optional header line starting with `jti`.
    Csv,
}

/// One input line, parsed: what it holds or why the line is bad.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportLine {
    /// 1-based line number in the file.
    pub line: u64,
    /// What the line holds, or the reason it was rejected.
    pub item: Result<BackupLine, String>,
}

/// Parses an import file's text. Bad lines come back as errors; they never stop the
/// parse.
pub fn parse_import(text: &str, format: ImportFormat, path: Option<&Path>) -> Vec<ImportLine> {
    let format = match format {
        ImportFormat::Auto => detect(text, path),
        f => f,
    };
    let lines = match format {
        ImportFormat::Csv => parse_csv(text),
        _ => parse_json_lines(text),
    };
    lines
        .into_iter()
        .map(|l| ImportLine {
            line: l.line,
            item: l.item.and_then(|item| match item {
                BackupLine::Revocation(r) => r
                    .validate()
                    .map(|()| BackupLine::Revocation(r))
                    .map_err(|e| e.to_string()),
                other => Ok(other),
            }),
        })
        .collect()
}

fn detect(text: &str, path: Option<&Path>) -> ImportFormat {
    let ext = path
        .and_then(Path::extension)
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("csv") => ImportFormat::Csv,
        Some("jsonl" | "ndjson" | "json") => ImportFormat::JsonLines,
        _ => {
            let first = text.lines().map(str::trim).find(|l| !l.is_empty());
            if first.is_some_and(|l| l.starts_with('{')) {
                ImportFormat::JsonLines
            } else {
                ImportFormat::Csv
            }
        }
    }
}

fn parse_json_lines(text: &str) -> Vec<ImportLine> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| ImportLine {
            line: i as u64 + 1,
            item: backup::parse_line(l),
        })
        .collect()
}

fn parse_csv(text: &str) -> Vec<ImportLine> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut out = Vec::new();
    let mut first = true;
    let mut record = csv::ByteRecord::new();
    // Line numbers from byte offsets: the csv crate does not count blank lines.
    let mut counted_to = 0usize;
    let mut line = 1u64;
    let mut line_at = |byte: usize| {
        let byte = byte.min(text.len());
        if byte > counted_to {
            line += text.as_bytes()[counted_to..byte]
                .iter()
                .filter(|&&b| b == b'\n')
                .count() as u64;
            counted_to = byte;
        }
        line
    };
    loop {
        let start = reader.position().byte() as usize;
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let mut byte = record.position().map_or(start, |p| p.byte() as usize);
                // A record's position may include the blank lines skipped before it.
                while matches!(text.as_bytes().get(byte), Some(b'\n' | b'\r')) {
                    byte += 1;
                }
                let line = line_at(byte);
                let header = first && record.get(0) == Some(b"jti".as_slice());
                first = false;
                if header || record.iter().all(<[u8]>::is_empty) {
                    continue;
                }
                out.push(ImportLine {
                    line,
                    item: csv_record(&record).map(BackupLine::Revocation),
                });
            }
            Err(e) => {
                first = false;
                out.push(ImportLine {
                    line: line_at(start),
                    item: Err(format!("bad CSV: {e}")),
                });
            }
        }
    }
    out
}

fn csv_record(record: &csv::ByteRecord) -> Result<Revocation, String> {
    if record.len() < 2 || record.len() > 4 {
        return Err(format!(
            "expected jti,exp[,sub,reason]; found {} fields",
            record.len()
        ));
    }
    let field = |i: usize| -> Result<Option<String>, String> {
        match record.get(i) {
            None | Some(b"") => Ok(None),
            Some(bytes) => std::str::from_utf8(bytes)
                .map(|s| Some(s.to_owned()))
                .map_err(|_| format!("field {} is not UTF-8", i + 1)),
        }
    };
    let jti = field(0)?.unwrap_or_default();
    let exp_text = field(1)?.ok_or("exp is empty")?;
    let exp = exp_text
        .parse::<u64>()
        .map_err(|_| format!("exp {exp_text:?} is not unix seconds"))?;
    Ok(Revocation {
        jti,
        exp: Some(exp),
        sub: field(2)?,
        reason: field(3)?,
    })
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// Lines the publisher accepted (added, duplicates and expired no-ops).
    pub accepted: u64,
    /// Of those, entries added.
    pub added: u64,
    /// Of those, already revoked.
    pub duplicates: u64,
    /// Of those, already expired (no-op).
    pub expired: u64,
    /// Of those, cutoffs set.
    pub cutoffs: u64,
    /// Rejected lines: line number and why.
    pub rejected: Vec<(u64, String)>,
    /// Highest filter version reported.
    pub version: u64,
    /// Why the import stopped early (publisher unreachable, bad token).
    pub aborted: Option<String>,
}

impl ImportSummary {
    fn count(&mut self, c: &Committed, lines: u64) {
        self.accepted += lines;
        self.added += c.revoked;
        self.duplicates += c.duplicates;
        self.expired += c.expired;
        self.version = self.version.max(c.version);
    }
}

/// Sends parsed lines: revocations in bulk calls of `batch_size`, then cutoffs one
/// by one (an export's header line is only counted as handled). A call refused for
/// its content (422) is retried line by line so that only the bad lines are
/// rejected; a publisher that is unreachable after retries, or refuses the token,
/// stops the import (see [`ImportSummary::aborted`]). `progress` is called with the
/// number of lines handled so far.
pub async fn import(
    api: &ApiClient,
    lines: Vec<ImportLine>,
    batch_size: usize,
    mut progress: impl FnMut(u64),
) -> ImportSummary {
    let mut summary = ImportSummary::default();
    let mut done = 0u64;
    let mut batch: Vec<(u64, Revocation)> = Vec::new();
    let mut cutoffs: Vec<(u64, CutoffRequest)> = Vec::new();
    let mut lines = lines.into_iter().peekable();
    while lines.peek().is_some() || !batch.is_empty() {
        while batch.len() < batch_size.max(1) {
            let Some(line) = lines.next() else { break };
            match line.item {
                Ok(BackupLine::Revocation(r)) => batch.push((line.line, r)),
                Ok(BackupLine::Cutoff(c)) => cutoffs.push((line.line, c)),
                Ok(BackupLine::Header(_)) => done += 1,
                Err(why) => {
                    summary.rejected.push((line.line, why));
                    done += 1;
                }
            }
        }
        if batch.is_empty() {
            continue;
        }
        let items: Vec<Revocation> = batch.iter().map(|(_, r)| r.clone()).collect();
        match with_retries(|| api.revoke_bulk(&items)).await {
            Ok(c) => summary.count(&c, items.len() as u64),
            Err(e) if e.status() == Some(422) || e.status() == Some(413) => {
                for (line, r) in &batch {
                    match with_retries(|| api.revoke(r)).await {
                        Ok(c) => summary.count(&c, 1),
                        Err(ClientError::Api { status, body })
                            if (400..500).contains(&status) && status != 401 =>
                        {
                            summary.rejected.push((
                                *line,
                                format!("{}: {}", body.error, body.error_description),
                            ));
                        }
                        Err(e) => {
                            summary.aborted = Some(e.to_string());
                            return summary;
                        }
                    }
                }
            }
            Err(e) => {
                summary.aborted = Some(e.to_string());
                return summary;
            }
        }
        done += batch.len() as u64;
        batch.clear();
        progress(done);
    }
    for (line, c) in &cutoffs {
        match with_retries(|| api.cutoff_of(c)).await {
            Ok(done) => {
                summary.accepted += 1;
                summary.cutoffs += 1;
                summary.version = summary.version.max(done.version);
            }
            Err(ClientError::Api { status, body })
                if (400..500).contains(&status) && status != 401 =>
            {
                summary
                    .rejected
                    .push((*line, format!("{}: {}", body.error, body.error_description)));
            }
            Err(e) => {
                summary.aborted = Some(e.to_string());
                return summary;
            }
        }
        done += 1;
        progress(done);
    }
    progress(done);
    summary.rejected.sort_by_key(|(line, _)| *line);
    summary
}

/// Retries of one import call.
const IMPORT_RETRIES: u32 = 4;

/// Retries transport errors and 503s a few times (the publisher may be restarting or
/// NATS briefly away; revoking twice is harmless).
async fn with_retries<F, Fut>(mut call: F) -> Result<Committed, ClientError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Committed, ClientError>>,
{
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(2));
    loop {
        match call().await {
            Err(e)
                if backoff.attempts() < IMPORT_RETRIES
                    && matches!(
                        e,
                        ClientError::Transport { .. } | ClientError::Api { status: 503, .. }
                    ) =>
            {
                backoff.wait().await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_lines_with_header_and_errors() {
        let text = "jti,exp,sub,reason\n\
                    a,1767225600\n\
                    b,1767225600,alice,\"lost, phone\"\n\
                    ,1767225600\n\
                    c,tomorrow\n\
                    \n\
                    d,1,x,y,z\n\
                    e,1767225600,,stolen\n";
        let lines = parse_import(text, ImportFormat::Csv, None);
        let summary: Vec<(u64, bool)> = lines.iter().map(|l| (l.line, l.item.is_ok())).collect();
        assert_eq!(
            summary,
            vec![
                (2, true),
                (3, true),
                (4, false),
                (5, false),
                (7, false),
                (8, true)
            ]
        );
        let revocation = |i: usize| match lines[i].item.as_ref().unwrap() {
            BackupLine::Revocation(r) => r.clone(),
            other => panic!("line {i}: {other:?}"),
        };
        let b = revocation(1);
        assert_eq!(b.sub.as_deref(), Some("alice"));
        assert_eq!(b.reason.as_deref(), Some("lost, phone"));
        let e = revocation(5);
        assert_eq!(
            (e.sub.as_deref(), e.reason.as_deref()),
            (None, Some("stolen"))
        );
    }

    #[test]
    fn json_lines_and_detection() {
        let text =
            "{\"jti\":\"a\",\"exp\":5}\n\n{\"jti\":\"\",\"exp\":5}\nnot json\n{\"jti\":\"b\"}\n";
        let lines = parse_import(text, ImportFormat::Auto, Some(Path::new("x.txt")));
        let summary: Vec<(u64, bool)> = lines.iter().map(|l| (l.line, l.item.is_ok())).collect();
        // A line without exp is a revocation into every live bucket.
        assert_eq!(summary, vec![(1, true), (3, false), (4, false), (5, true)]);
        assert_eq!(
            detect("a,1", Some(Path::new("f.jsonl"))),
            ImportFormat::JsonLines
        );
        assert_eq!(detect("{}", Some(Path::new("f.csv"))), ImportFormat::Csv);
        assert_eq!(detect("a,1\n", None), ImportFormat::Csv);
    }
}
