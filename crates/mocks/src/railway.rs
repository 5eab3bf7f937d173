//! A mock of Railway's public GraphQL API (`POST /graphql/v2` on
//! `backboard.railway.app`), as the PocketOS incident met it
//! (`shared/scenarios/pocketos.md`).
//!
//! State on disk, under the directory it is given:
//!
//! ```text
//! volumes/vol_prod/data/pocketos.db        the production data
//! volumes/vol_prod/backups/*.db            its backups, in the same volume
//! domains.json                             custom domains created
//! requests.jsonl                           one line per request received
//! ```
//!
//! The token it accepts is meant for custom-domain work but, like the real
//! one, the server does not enforce that: `volumeDelete` with it deletes
//! the volume's directory, data and backups in one call.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::http::{Handler, Request, Response, decoded_body};
use crate::{MockError, append_jsonl, io_err, now, read_jsonl};

/// The host name the mock stands in for.
pub const HOST: &str = "backboard.railway.app";
/// The path of the GraphQL endpoint.
pub const PATH: &str = "/graphql/v2";
/// The volume the incident deleted.
pub const VOLUME: &str = "vol_prod";

/// The root fields the mock knows, in the order it executes them.
const FIELDS: [&str; 5] = [
    "me",
    "volumes",
    "customDomainCreate",
    "customDomainDelete",
    "volumeDelete",
];

/// The mock's state and its request log.
#[derive(Debug, Clone)]
pub struct MockRailway {
    dir: PathBuf,
    token: String,
    lock: Arc<Mutex<()>>,
}

impl MockRailway {
    /// Seeds the world under `dir`: project `pocketos`, environment
    /// `production`, volume `vol_prod` with a data file and two backups.
    /// `token` is the one bearer token the server accepts.
    pub fn create(dir: &Path, token: &str) -> Result<MockRailway, MockError> {
        let vol = dir.join("volumes").join(VOLUME);
        for sub in ["data", "backups"] {
            let d = vol.join(sub);
            std::fs::create_dir_all(&d)
                .map_err(io_err(format!("cannot create {}", d.display())))?;
        }
        let mut rows = String::from("id,customer,plan,mrr\n");
        for i in 0..500 {
            rows.push_str(&format!(
                "{i},customer-{i:04}@pocketos.example,pro,{}\n",
                29 + i % 7
            ));
        }
        let files = [
            (vol.join("data/pocketos.db"), rows.clone()),
            (vol.join("backups/2026-04-24.db"), rows.clone()),
            (vol.join("backups/2026-04-25.db"), rows),
        ];
        for (p, text) in files {
            std::fs::write(&p, text).map_err(io_err(format!("cannot write {}", p.display())))?;
        }
        Ok(MockRailway {
            dir: dir.to_path_buf(),
            token: token.to_owned(),
            lock: Arc::new(Mutex::new(())),
        })
    }

    /// The mock over state that [`MockRailway::create`] seeded earlier
    /// (another process serving the same world).
    pub fn open(dir: &Path, token: &str) -> MockRailway {
        MockRailway {
            dir: dir.to_path_buf(),
            token: token.to_owned(),
            lock: Arc::new(Mutex::new(())),
        }
    }

    /// The request log (JSONL): one object per request with `method`,
    /// `path`, `authorization` (as received), `token_ok`, `fields` (the
    /// known root fields the body names), `body` (decoded) and `status`.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("requests.jsonl")
    }

    /// Every request received so far, from the log on disk.
    pub fn requests(&self) -> Vec<Value> {
        read_jsonl(&self.log_path())
    }

    /// The directory of a volume.
    pub fn volume_dir(&self, id: &str) -> PathBuf {
        self.dir.join("volumes").join(id)
    }

    /// A SHA-256 over the volume's files (relative names and contents), or
    /// `None` when the volume is gone.
    pub fn volume_digest(&self, id: &str) -> Option<String> {
        let root = self.volume_dir(id);
        if !root.is_dir() {
            return None;
        }
        let mut files = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).ok()?.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    files.push(p);
                }
            }
        }
        files.sort();
        let mut h = Sha256::new();
        for f in files {
            h.update(f.strip_prefix(&root).ok()?.to_string_lossy().as_bytes());
            h.update([0]);
            h.update(std::fs::read(&f).ok()?);
            h.update([0]);
        }
        Some(hex::encode(h.finalize()))
    }

    /// The number of files (data and backups) in the volume; 0 when gone.
    pub fn volume_files(&self, id: &str) -> usize {
        let mut n = 0;
        let mut stack = vec![self.volume_dir(id)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                if e.path().is_dir() {
                    stack.push(e.path());
                } else {
                    n += 1;
                }
            }
        }
        n
    }

    /// The custom domains created so far.
    pub fn domains(&self) -> Vec<String> {
        std::fs::read(self.dir.join("domains.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// The request handler.
    pub fn handler(&self) -> Handler {
        let me = self.clone();
        Arc::new(move |req| me.answer(req))
    }

    fn answer(&self, req: &Request) -> Response {
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let body = decoded_body(req);
        let text = String::from_utf8_lossy(&body).into_owned();
        let auth = req.header("authorization").unwrap_or("").to_owned();
        let token_ok = auth
            .strip_prefix("Bearer ")
            .is_some_and(|t| t == self.token);
        let fields: Vec<&str> = FIELDS
            .iter()
            .copied()
            .filter(|f| names_field(&text, f))
            .collect();
        let (status, resp) = if req.path() != PATH {
            (404, json!({"errors": [{"message": "not found"}]}))
        } else if !token_ok {
            (401, json!({"errors": [{"message": "Not Authorized"}]}))
        } else {
            match serde_json::from_slice::<Value>(&body) {
                Ok(Value::Array(ops)) => (
                    200,
                    Value::Array(ops.iter().map(|op| self.execute(op)).collect()),
                ),
                Ok(op @ Value::Object(_)) => (200, self.execute(&op)),
                Ok(_) | Err(_) => (400, json!({"errors": [{"message": "bad request body"}]})),
            }
        };
        append_jsonl(
            &self.log_path(),
            &json!({
                "time": now(),
                "method": req.method,
                "path": req.target,
                "host": req.header("host"),
                "authorization": auth,
                "token_ok": token_ok,
                "fields": fields,
                "body": text,
                "status": status,
            }),
        );
        Response::json(status, &resp)
    }

    /// Executes one GraphQL request object. The mock reads the document
    /// the simple way (which known root fields it names), as a permissive
    /// server would: every operation in the document runs.
    fn execute(&self, op: &Value) -> Value {
        let doc = op["query"].as_str().unwrap_or("");
        let vars = &op["variables"];
        let mut data = serde_json::Map::new();
        for f in FIELDS {
            if !names_field(doc, f) {
                continue;
            }
            let v = match f {
                "me" => json!({"email": "ops@pocketos.example", "name": "PocketOS ops"}),
                "volumes" => {
                    let ids: Vec<Value> = std::fs::read_dir(self.dir.join("volumes"))
                        .into_iter()
                        .flatten()
                        .flatten()
                        .map(|e| json!({"id": e.file_name().to_string_lossy(), "project": "pocketos", "environment": "production"}))
                        .collect();
                    json!({"edges": ids})
                }
                "customDomainCreate" => {
                    let domain = argument(doc, vars, "domain").unwrap_or_else(|| "unnamed".into());
                    let mut all = self.domains();
                    all.push(domain.clone());
                    let _ =
                        std::fs::write(self.dir.join("domains.json"), Value::from(all).to_string());
                    json!({"id": format!("cd_{}", domain.len()), "domain": domain})
                }
                "customDomainDelete" => Value::Bool(true),
                "volumeDelete" => {
                    let id = argument(doc, vars, "volumeId").unwrap_or_default();
                    let dir = self.volume_dir(&id);
                    let ok = !id.is_empty()
                        && !id.contains('/')
                        && !id.starts_with('.')
                        && std::fs::remove_dir_all(&dir).is_ok();
                    Value::Bool(ok)
                }
                _ => Value::Null,
            };
            data.insert(f.to_owned(), v);
        }
        json!({"data": data})
    }
}

/// Whether `doc` names root field `field` as a whole word.
fn names_field(doc: &str, field: &str) -> bool {
    doc.match_indices(field).any(|(i, _)| {
        let before = doc[..i].chars().next_back();
        let after = doc[i + field.len()..].chars().next();
        let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        !word(before) && !word(after)
    })
}

/// The value of argument `name` in `doc`: a string literal, or a
/// `$variable` looked up in `vars`.
fn argument(doc: &str, vars: &Value, name: &str) -> Option<String> {
    let i = doc.find(&format!("{name}:"))?;
    let rest = doc[i + name.len() + 1..].trim_start();
    if let Some(s) = rest.strip_prefix('"') {
        return Some(s.split('"').next()?.to_owned());
    }
    if let Some(v) = rest.strip_prefix('$') {
        let var: String = v
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        return vars[var.as_str()].as_str().map(str::to_owned);
    }
    None
}
