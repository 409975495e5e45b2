//! The token table: which bearer token belongs to which identity and role.
//!
//! It is kept as text, one identity per line, holding only the SHA-256 of each token, so the file (or the
//! environment variable) that holds it gives nothing away:
//!
//! ```text
//! # role     identity      token hash
//! operator   alice         sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae
//! agent      planner-1     sha256:fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9
//! ```
//!
//! With mutual TLS, a line may name `cert` instead of a hash: the identity then authenticates with a client
//! certificate whose subject common name or a DNS subject alternative name is the identity (`worker worker-1 cert`).
//!
//! `control-tower auth new-token --role agent --id planner-1` makes a token and its line. A file is read again
//! whenever it changes, so tokens are added and revoked without a restart; a file that no longer parses is refused
//! and the previous table stays in force.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::{Identity, Role};

const HASH_PREFIX: &str = "sha256:";
/// In place of a hash: the identity authenticates with a client certificate.
const CERTIFICATE: &str = "cert";
const MAX_IDENTITY_CHARS: usize = 128;

/// The hex SHA-256 of a token, as the table holds it.
pub fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random token: 32 bytes from the operating system, hex encoded behind a recognisable prefix.
pub fn new_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(format!("ct_{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()))
}

/// Identities are recorded as audit actors, and a worker's is its worker id: the same characters as worker ids.
pub fn validate_identity(id: &str) -> Result<(), String> {
    if id.is_empty()
        || id.chars().count() > MAX_IDENTITY_CHARS
        || !id.chars().all(|c| c.is_ascii_alphanumeric() || "._:@-".contains(c))
    {
        return Err(format!("identity {id:?} must be 1-128 characters of [A-Za-z0-9._:@-]"));
    }
    Ok(())
}

/// Identities by token hash, and those that authenticate with a client certificate.
#[derive(Debug, Default, Clone)]
pub struct TokenTable {
    by_hash: HashMap<String, Arc<Identity>>,
    by_certificate: HashMap<String, Arc<Identity>>,
}

impl TokenTable {
    /// Parses the table; an error names the line and what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut by_hash = HashMap::new();
        let mut by_certificate = HashMap::new();
        let mut ids: HashMap<String, usize> = HashMap::new();
        for (index, raw) in text.lines().flat_map(|l| l.split(';')).enumerate() {
            let line = raw.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let at = || format!("token table entry {}", index + 1);
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [role, id, hash] = fields[..] else {
                return Err(format!(
                    "{}: expected `ROLE IDENTITY sha256:HEX` or `ROLE IDENTITY cert`, got {line:?}",
                    at()
                ));
            };
            let role = Role::parse(role)
                .ok_or_else(|| format!("{}: unknown role {role:?} (operator, agent, worker, viewer)", at()))?;
            validate_identity(id).map_err(|e| format!("{}: {e}", at()))?;
            if let Some(previous) = ids.insert(id.to_owned(), index + 1) {
                return Err(format!("{}: identity {id:?} is already on entry {previous}", at()));
            }
            let identity = Arc::new(Identity { id: id.to_owned(), role });
            if hash == CERTIFICATE {
                by_certificate.insert(id.to_owned(), identity);
                continue;
            }
            let hex = hash.strip_prefix(HASH_PREFIX).unwrap_or_default().to_ascii_lowercase();
            if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(format!("{}: the token hash must be sha256: and 64 hex digits, or `cert`", at()));
            }
            if by_hash.insert(hex, identity).is_some() {
                return Err(format!("{}: the same token is listed twice", at()));
            }
        }
        Ok(Self { by_hash, by_certificate })
    }

    pub fn len(&self) -> usize {
        self.by_hash.len() + self.by_certificate.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn authenticate(&self, token: &str) -> Option<Arc<Identity>> {
        self.by_hash.get(&hash_token(token)).cloned()
    }

    /// The identity of a client certificate, given the names it carries (its common name and DNS names).
    pub fn authenticate_certificate(&self, names: &[String]) -> Option<Arc<Identity>> {
        names.iter().find_map(|name| self.by_certificate.get(name).cloned())
    }
}

/// Where the table comes from: a file (reloaded on change), inline text (from the environment), or both.
#[derive(Debug, Clone, Default)]
pub struct TokenSource {
    pub file: Option<PathBuf>,
    pub inline: Option<String>,
}

impl TokenSource {
    pub fn is_configured(&self) -> bool {
        self.file.is_some() || self.inline.as_deref().is_some_and(|s| !s.trim().is_empty())
    }

    fn load(&self) -> Result<TokenTable, String> {
        let mut text = self.inline.clone().unwrap_or_default();
        if let Some(path) = &self.file {
            let file = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            text.push('\n');
            text.push_str(&file);
        }
        TokenTable::parse(&text)
    }
}

/// The live token table, swapped whole when the file changes.
#[derive(Debug)]
pub struct Authenticator {
    source: TokenSource,
    table: RwLock<Arc<TokenTable>>,
    /// The file's modification time and length when it was last read.
    seen: RwLock<Option<(SystemTime, u64)>>,
}

impl Authenticator {
    pub fn load(source: TokenSource) -> Result<Arc<Self>, String> {
        let seen = source.file.as_deref().and_then(stamp);
        let table = source.load()?;
        Ok(Arc::new(Self { source, table: RwLock::new(Arc::new(table)), seen: RwLock::new(seen) }))
    }

    pub fn authenticate(&self, token: &str) -> Option<Arc<Identity>> {
        let table = self.table.read().unwrap_or_else(|e| e.into_inner()).clone();
        table.authenticate(token)
    }

    pub fn authenticate_certificate(&self, names: &[String]) -> Option<Arc<Identity>> {
        let table = self.table.read().unwrap_or_else(|e| e.into_inner()).clone();
        table.authenticate_certificate(names)
    }

    pub fn identities(&self) -> usize {
        self.table.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Reads the file again if it changed since it was last read; a table that does not parse is not taken.
    pub fn reload_if_changed(&self) {
        let Some(path) = &self.source.file else { return };
        let now = stamp(path);
        if now == *self.seen.read().unwrap_or_else(|e| e.into_inner()) {
            return;
        }
        *self.seen.write().unwrap_or_else(|e| e.into_inner()) = now;
        match self.source.load() {
            Ok(table) => {
                tracing::info!(file = %path.display(), identities = table.len(), "token table reloaded");
                *self.table.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
            }
            Err(error) => tracing::error!(%error, "the token table did not load; the previous one stays in force"),
        }
    }

    /// Checks the file for changes every `interval` until `stop`.
    pub fn spawn_reloader(self: &Arc<Self>, interval: Duration, stop: CancellationToken) {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(interval) => this.reload_if_changed(),
                }
            }
        });
    }
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(role: &str, id: &str, token: &str) -> String {
        format!("{role} {id} sha256:{}\n", hash_token(token))
    }

    #[test]
    fn a_token_maps_to_its_identity_and_only_its_hash_is_kept() {
        let text = format!("# comment\n{}{}", line("operator", "alice", "s3cret"), line("worker", "w-1", "other"));
        let table = TokenTable::parse(&text).unwrap();
        assert_eq!(table.authenticate("s3cret").unwrap().id, "alice");
        assert_eq!(table.authenticate("other").unwrap().role, Role::Worker);
        assert!(table.authenticate("S3cret").is_none());
        assert!(!text.contains("s3cret"));
    }

    #[test]
    fn bad_lines_are_refused_with_their_entry_number() {
        for (text, says) in [
            ("operator alice", "expected"),
            ("admin alice sha256:00", "unknown role"),
            ("agent a/b sha256:00", "identity"),
            ("agent a sha256:xyz", "64 hex"),
        ] {
            let error = TokenTable::parse(text).unwrap_err();
            assert!(error.contains("entry 1") && error.contains(says), "{error}");
        }
        let twice = format!("{}{}", line("agent", "a", "t1"), line("viewer", "a", "t2"));
        assert!(TokenTable::parse(&twice).unwrap_err().contains("already"));
    }

    #[test]
    fn a_certificate_identity_matches_one_of_the_certificate_names() {
        let error = TokenTable::parse("worker worker-1 cert\nviewer dash sha256:").unwrap_err();
        assert!(error.contains("entry 2"), "{error}");
        let table = TokenTable::parse("worker worker-1 cert").unwrap();
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(table.authenticate_certificate(&names(&["host.example", "worker-1"])).unwrap().id, "worker-1");
        assert!(table.authenticate_certificate(&names(&["worker-2"])).is_none());
        assert!(table.authenticate("cert").is_none(), "the word cert is not a token");
    }
}
