//! Pending approvals: what an `ask` becomes while a person decides, and
//! where it is kept.
//!
//! An [`Approval`] binds to one action digest (the request as it will be
//! forwarded) and moves through [`State`] once: `pending` → `approved` →
//! `consumed` (used by the one held request it was made for), or `pending`
//! → `denied` / `expired` / `abandoned`. Every move is a compare-and-set in
//! the store ([`ApprovalStore::transition`]), so a yes that races a timeout
//! or a closed connection never forwards anything twice or late.
//!
//! The store sits behind a trait; [`SqliteStore`] is the embedded one
//! (`$BLASTWALL_HOME/approvals.db`, 0600, WAL), shared by every session of
//! the user and by the `approvals`, `approve` and `deny` commands. A
//! PostgreSQL store for fleets can implement the same trait.

use std::path::Path;
use std::sync::{Mutex, PoisonError};

use blastwall_policy::RuleRef;
use rusqlite::{Connection, OptionalExtension as _, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::summary::Summary;

/// Where an approval is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Waiting for a person.
    Pending,
    /// A person said yes; the held request has not used it yet.
    Approved,
    /// A person said no.
    Denied,
    /// Nobody answered in time: a deny.
    Expired,
    /// The agent's connection went away first; nothing is forwarded.
    Abandoned,
    /// Approved and used by its request: it cannot be used again.
    Consumed,
}

impl State {
    /// Every state.
    pub const ALL: [State; 6] = [
        State::Pending,
        State::Approved,
        State::Denied,
        State::Expired,
        State::Abandoned,
        State::Consumed,
    ];

    /// The state as stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Approved => "approved",
            State::Denied => "denied",
            State::Expired => "expired",
            State::Abandoned => "abandoned",
            State::Consumed => "consumed",
        }
    }

    fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One held action waiting for (or past) a person's decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    /// `ap-` and 16 hex digits, random.
    pub id: String,
    /// The session whose agent asked.
    pub session: String,
    /// The audit sequence number of the `ask` decision.
    pub request_id: u64,
    /// What a person reads.
    pub summary: Summary,
    /// The action as the audit log holds it.
    pub action: Value,
    /// Hex SHA-256 of the request as it will be forwarded (method, URL,
    /// end-to-end headers, body, the credential to inject, the pinned
    /// upstream address).
    pub digest: String,
    /// The rule that asked.
    pub rule: RuleRef,
    /// Its reason.
    pub reason: String,
    /// The risk labels.
    pub labels: Vec<String>,
    /// Whether the action is labelled destructive or irreversible (shown first).
    pub destructive: bool,
    /// Asks of the same rule on the same host are grouped under this key.
    pub group: String,
    /// When it was created (ns since the epoch).
    pub created_ns: i64,
    /// When it becomes a deny (ns since the epoch).
    pub expires_ns: i64,
    /// Where it is.
    pub state: State,
    /// When it left `pending`.
    pub decided_ns: Option<i64>,
    /// Who decided (`uid 1000 (ana) via approve`), or why it ended.
    pub decided_by: Option<String>,
    /// The person's note.
    pub note: Option<String>,
}

/// A query for [`ApprovalStore::list`].
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Only this session's.
    pub session: Option<String>,
    /// Only these states (all when empty).
    pub states: Vec<State>,
    /// At most this many (newest first after ordering), 0 = no limit.
    pub limit: usize,
}

/// The store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("approval store: {0}")]
    Db(#[from] rusqlite::Error),
    /// A record does not decode.
    #[error("approval store: record {id} is damaged: {why}")]
    Damaged {
        /// The approval.
        id: String,
        /// Why.
        why: String,
    },
    /// The store's file could not be prepared.
    #[error("approval store {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Where approvals are kept.
pub trait ApprovalStore: Send + Sync + std::fmt::Debug {
    /// Adds a new approval.
    fn insert(&self, a: &Approval) -> Result<(), StoreError>;
    /// One approval.
    fn get(&self, id: &str) -> Result<Option<Approval>, StoreError>;
    /// Approvals matching `q`: destructive first, then grouped by rule and
    /// host, oldest first within a group.
    fn list(&self, q: &Query) -> Result<Vec<Approval>, StoreError>;
    /// Moves `id` to `to` if it is in one of `from` (compare-and-set);
    /// returns the approval as it is afterwards, or `None` when it was in
    /// another state (or does not exist).
    fn transition(
        &self,
        id: &str,
        from: &[State],
        to: State,
        at_ns: i64,
        by: Option<&str>,
        note: Option<&str>,
    ) -> Result<Option<Approval>, StoreError>;
    /// How many of `session`'s approvals are pending.
    fn pending_count(&self, session: &str) -> Result<usize, StoreError>;
}

/// The embedded store: one SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Option<Connection>>,
    path: Option<std::path::PathBuf>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS approvals (
    id          TEXT PRIMARY KEY,
    session     TEXT NOT NULL,
    state       TEXT NOT NULL,
    destructive INTEGER NOT NULL,
    grp         TEXT NOT NULL,
    created_ns  INTEGER NOT NULL,
    expires_ns  INTEGER NOT NULL,
    decided_ns  INTEGER,
    decided_by  TEXT,
    note        TEXT,
    record      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS approvals_by_state ON approvals (state, session);
";

/// The part of an approval that never changes, stored as JSON.
#[derive(Serialize, Deserialize)]
struct Fixed {
    request_id: u64,
    summary: Summary,
    action: Value,
    digest: String,
    rule: RuleRef,
    reason: String,
    labels: Vec<String>,
}

impl SqliteStore {
    /// Opens (creating) the store at `path`; the file is made 0600.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        Ok(SqliteStore {
            conn: Mutex::new(Some(Self::connect(path)?)),
            path: Some(path.to_path_buf()),
        })
    }

    /// A store at `path` opened on first use: a session that never asks
    /// never touches the file (start-up stays fast). An error then comes
    /// from the first call, and the ask it serves is refused.
    pub fn open_lazily(path: &Path) -> SqliteStore {
        SqliteStore {
            conn: Mutex::new(None),
            path: Some(path.to_path_buf()),
        }
    }

    fn connect(path: &Path) -> Result<Connection, StoreError> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let io = |source| StoreError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        // Create it 0600 before SQLite does (SQLite would use the umask).
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(conn)
    }

    /// A store in memory (tests).
    pub fn in_memory() -> Result<SqliteStore, StoreError> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(SCHEMA)?;
        Ok(SqliteStore {
            conn: Mutex::new(Some(conn)),
            path: None,
        })
    }

    fn lock(&self) -> Result<ConnGuard<'_>, StoreError> {
        let mut g = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        if g.is_none()
            && let Some(p) = &self.path
        {
            *g = Some(Self::connect(p)?);
        }
        if g.is_none() {
            return Err(StoreError::Io {
                path: String::new(),
                source: std::io::Error::other("the store is closed"),
            });
        }
        Ok(ConnGuard(g))
    }
}

/// A locked, open connection.
struct ConnGuard<'a>(std::sync::MutexGuard<'a, Option<Connection>>);

impl std::ops::Deref for ConnGuard<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        // Checked to be `Some` when the guard was made.
        self.0.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl std::ops::DerefMut for ConnGuard<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.0.as_mut().unwrap_or_else(|| unreachable!())
    }
}

const COLUMNS: &str = "id, session, state, destructive, grp, created_ns, expires_ns, decided_ns, decided_by, note, record";

fn row_to_approval(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Approval, StoreError>> {
    let id: String = row.get(0)?;
    let state: String = row.get(2)?;
    let record: String = row.get(10)?;
    let Some(state) = State::parse(&state) else {
        return Ok(Err(StoreError::Damaged {
            id,
            why: format!("unknown state {state:?}"),
        }));
    };
    let fixed: Fixed = match serde_json::from_str(&record) {
        Ok(f) => f,
        Err(e) => {
            return Ok(Err(StoreError::Damaged {
                id,
                why: e.to_string(),
            }));
        }
    };
    Ok(Ok(Approval {
        session: row.get(1)?,
        state,
        destructive: row.get(3)?,
        group: row.get(4)?,
        created_ns: row.get(5)?,
        expires_ns: row.get(6)?,
        decided_ns: row.get(7)?,
        decided_by: row.get(8)?,
        note: row.get(9)?,
        id,
        request_id: fixed.request_id,
        summary: fixed.summary,
        action: fixed.action,
        digest: fixed.digest,
        rule: fixed.rule,
        reason: fixed.reason,
        labels: fixed.labels,
    }))
}

fn get_one(conn: &Connection, id: &str) -> Result<Option<Approval>, StoreError> {
    let r = conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM approvals WHERE id = ?1"),
            params![id],
            row_to_approval,
        )
        .optional()?;
    r.transpose()
}

impl ApprovalStore for SqliteStore {
    fn insert(&self, a: &Approval) -> Result<(), StoreError> {
        let fixed = Fixed {
            request_id: a.request_id,
            summary: a.summary.clone(),
            action: a.action.clone(),
            digest: a.digest.clone(),
            rule: a.rule.clone(),
            reason: a.reason.clone(),
            labels: a.labels.clone(),
        };
        let record = serde_json::to_string(&fixed).map_err(|e| StoreError::Damaged {
            id: a.id.clone(),
            why: e.to_string(),
        })?;
        self.lock()?.execute(
            &format!("INSERT INTO approvals ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
            params![
                a.id,
                a.session,
                a.state.as_str(),
                a.destructive,
                a.group,
                a.created_ns,
                a.expires_ns,
                a.decided_ns,
                a.decided_by,
                a.note,
                record
            ],
        )?;
        Ok(())
    }

    fn get(&self, id: &str) -> Result<Option<Approval>, StoreError> {
        let conn = self.lock()?;
        get_one(&conn, id)
    }

    fn list(&self, q: &Query) -> Result<Vec<Approval>, StoreError> {
        let conn = self.lock()?;
        let mut sql = format!("SELECT {COLUMNS} FROM approvals WHERE 1 = 1");
        let mut args: Vec<String> = Vec::new();
        if let Some(s) = &q.session {
            args.push(s.clone());
            sql.push_str(&format!(" AND session = ?{}", args.len()));
        }
        if !q.states.is_empty() {
            let mut marks = Vec::new();
            for s in &q.states {
                args.push(s.as_str().to_owned());
                marks.push(format!("?{}", args.len()));
            }
            sql.push_str(&format!(" AND state IN ({})", marks.join(", ")));
        }
        sql.push_str(" ORDER BY destructive DESC, grp, created_ns, id");
        if q.limit > 0 {
            sql.push_str(&format!(" LIMIT {}", q.limit));
        }
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), row_to_approval)?;
        let mut out = Vec::new();
        for r in rows {
            out.push(r??);
        }
        Ok(out)
    }

    fn transition(
        &self,
        id: &str,
        from: &[State],
        to: State,
        at_ns: i64,
        by: Option<&str>,
        note: Option<&str>,
    ) -> Result<Option<Approval>, StoreError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let row: Option<(String, i64)> = tx
            .query_row(
                "SELECT state, expires_ns FROM approvals WHERE id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((current, expires)) = row.and_then(|(st, ex)| Some((State::parse(&st)?, ex)))
        else {
            return Ok(None);
        };
        if !from.contains(&current) {
            return Ok(None);
        }
        // A yes after the deadline is no yes: the ask has become a deny
        // whether or not its waiter has noticed yet.
        if to == State::Approved && at_ns >= expires {
            return Ok(None);
        }
        // The time and author of a decision stay those of the person (or the
        // timeout) that ended `pending`; consuming only changes the state.
        if current == State::Pending {
            tx.execute(
                "UPDATE approvals SET state = ?2, decided_ns = ?3, decided_by = ?4, note = ?5 WHERE id = ?1",
                params![id, to.as_str(), at_ns, by, note],
            )?;
        } else {
            tx.execute(
                "UPDATE approvals SET state = ?2 WHERE id = ?1",
                params![id, to.as_str()],
            )?;
        }
        let after = get_one(&tx, id)?;
        tx.commit()?;
        Ok(after)
    }

    fn pending_count(&self, session: &str) -> Result<usize, StoreError> {
        let n: i64 = self.lock()?.query_row(
            "SELECT count(*) FROM approvals WHERE session = ?1 AND state = 'pending'",
            params![session],
            |r| r.get(0),
        )?;
        Ok(usize::try_from(n).unwrap_or(0))
    }
}

/// A fresh approval id: `ap-` and 16 random hex digits.
pub fn new_id() -> String {
    let mut b = [0u8; 8];
    if getrandom::getrandom(&mut b).is_err() {
        // No entropy source: fall back to time and pid, still unique here.
        let t = crate::now_ns().to_le_bytes();
        b.copy_from_slice(&t);
        b[0] ^= std::process::id().to_le_bytes()[0];
    }
    format!("ap-{}", hex::encode(b))
}
