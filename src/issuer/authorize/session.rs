//! Server-side login sessions of the authorization endpoint (memory).
//!
//! The browser holds only a random id (256 bits) in an `HttpOnly` cookie; the server keeps,
//! keyed by the SHA-256 of that id: the CSRF token of the forms, the pending authorization
//! requests (by request id, at most [`MAX_PENDING`] per session), the logged-in user (after a
//! successful login, which also rotates the id against session fixation) and the consents
//! given in this session. Sessions end `ttl` after they were created (the login does not extend
//! them); the table is bounded and expired sessions are dropped first.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;

use crate::issuer::store::hash_secret;

/// Most pending authorization requests per session (older ones are dropped).
pub(crate) const MAX_PENDING: usize = 8;

/// Random bytes, base64url.
pub(crate) fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if aws_lc_rs::rand::fill(&mut buf).is_err() {
        tracing::error!("system random number generator failed");
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&buf)
}

/// An authorization request that passed every check, waiting for login and consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pending {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) scopes: Vec<String>,
    pub(crate) state: Option<String>,
    pub(crate) code_challenge: Option<String>,
}

/// The logged-in user of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LoggedIn {
    pub(crate) user_id: String,
    pub(crate) username: String,
    pub(crate) auth_time: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) expires: u64,
    pub(crate) csrf: String,
    pub(crate) user: Option<LoggedIn>,
    /// (client id, scopes) consented to in this session.
    pub(crate) consents: Vec<(String, Vec<String>)>,
    pending: Vec<(String, Pending)>,
}

impl Session {
    pub(crate) fn pending(&self, rid: &str) -> Option<&Pending> {
        self.pending.iter().find(|(r, _)| r == rid).map(|(_, p)| p)
    }

    pub(crate) fn has_consent(&self, client_id: &str, scopes: &[String]) -> bool {
        self.consents
            .iter()
            .any(|(c, s)| c == client_id && scopes.iter().all(|x| s.contains(x)))
    }
}

/// Why a session could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionsFull;

/// The session table.
#[derive(Debug)]
pub(crate) struct Sessions {
    ttl: Duration,
    max: usize,
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    pub(crate) fn new(ttl: Duration, max: usize) -> Self {
        Self {
            ttl,
            max,
            map: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new empty session: its id (for the cookie) and CSRF token.
    pub(crate) fn create(&self, now: u64) -> Result<(String, Session), SessionsFull> {
        let mut map = self.lock();
        if map.len() >= self.max {
            map.retain(|_, s| s.expires > now);
        }
        if map.len() >= self.max {
            // Full of live sessions (a flood of anonymous requests?): the anonymous session
            // closest to its end makes room; logged-in users are never pushed out.
            let oldest = map
                .iter()
                .filter(|(_, s)| s.user.is_none())
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => {
                    map.remove(&k);
                }
                None => return Err(SessionsFull),
            }
        }
        let id = random_token(32);
        let session = Session {
            expires: now.saturating_add(self.ttl.as_secs()),
            csrf: random_token(32),
            user: None,
            consents: Vec::new(),
            pending: Vec::new(),
        };
        map.insert(hash_secret(&id), session.clone());
        Ok((id, session))
    }

    /// The live session of `id`.
    pub(crate) fn get(&self, id: &str, now: u64) -> Option<Session> {
        let key = hash_secret(id);
        let mut map = self.lock();
        match map.get(&key) {
            Some(s) if s.expires > now => Some(s.clone()),
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Adds a pending request; returns its id.
    pub(crate) fn add_pending(&self, id: &str, p: Pending, now: u64) -> Option<String> {
        let mut map = self.lock();
        let s = map.get_mut(&hash_secret(id)).filter(|s| s.expires > now)?;
        if s.pending.len() >= MAX_PENDING {
            s.pending.remove(0);
        }
        let rid = random_token(16);
        s.pending.push((rid.clone(), p));
        Some(rid)
    }

    /// Removes and returns a pending request (it is answered exactly once).
    pub(crate) fn take_pending(&self, id: &str, rid: &str, now: u64) -> Option<Pending> {
        let mut map = self.lock();
        let s = map.get_mut(&hash_secret(id)).filter(|s| s.expires > now)?;
        let i = s.pending.iter().position(|(r, _)| r == rid)?;
        Some(s.pending.remove(i).1)
    }

    /// A successful login: the session gets a new id (session fixation) and CSRF token and
    /// the user; returns the new id.
    pub(crate) fn login(&self, id: &str, user: LoggedIn, now: u64) -> Option<(String, Session)> {
        let mut map = self.lock();
        let mut s = map.remove(&hash_secret(id)).filter(|s| s.expires > now)?;
        if s.user.as_ref().is_some_and(|u| u.user_id != user.user_id) {
            // Another user: nothing of the previous one's consents carries over.
            s.consents.clear();
        }
        s.user = Some(user);
        s.csrf = random_token(32);
        let new_id = random_token(32);
        map.insert(hash_secret(&new_id), s.clone());
        Some((new_id, s))
    }

    /// Remembers a consent for the session's user.
    pub(crate) fn consent(&self, id: &str, client_id: &str, scopes: &[String], now: u64) {
        let mut map = self.lock();
        if let Some(s) = map.get_mut(&hash_secret(id)).filter(|s| s.expires > now) {
            s.consents.push((client_id.to_owned(), scopes.to_vec()));
        }
    }

    /// How many sessions are held (expired ones included until dropped).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending() -> Pending {
        Pending {
            client_id: "web".into(),
            redirect_uri: "https://app.example/cb".into(),
            scopes: vec!["a".into()],
            state: None,
            code_challenge: None,
        }
    }

    #[test]
    fn login_rotates_the_id_and_pending_is_taken_once() {
        let s = Sessions::new(Duration::from_secs(60), 10);
        let (id, sess) = s.create(100).unwrap();
        let rid = s.add_pending(&id, pending(), 100).unwrap();
        let user = LoggedIn {
            user_id: "1".into(),
            username: "alice".into(),
            auth_time: 101,
        };
        let (new_id, after) = s.login(&id, user, 101).unwrap();
        assert_ne!(new_id, id);
        assert_ne!(after.csrf, sess.csrf);
        assert!(s.get(&id, 101).is_none(), "the old id is gone");
        assert_eq!(s.take_pending(&new_id, &rid, 102), Some(pending()));
        assert_eq!(s.take_pending(&new_id, &rid, 102), None);
        assert!(s.get(&new_id, 160).is_none(), "expired");
    }

    #[test]
    fn table_is_bounded_and_pending_capped() {
        let s = Sessions::new(Duration::from_secs(10), 2);
        let (id, _) = s.create(0).unwrap();
        let (anon, _) = s.create(1).unwrap();
        let user = LoggedIn {
            user_id: "1".into(),
            username: "alice".into(),
            auth_time: 2,
        };
        let (id, _) = s.login(&id, user.clone(), 2).unwrap();
        // Full: the anonymous session goes, the logged-in one stays.
        let (anon2, _) = s.create(5).unwrap();
        assert!(s.get(&anon, 5).is_none());
        assert!(s.get(&id, 5).is_some());
        s.login(&anon2, user, 5).unwrap();
        assert!(
            matches!(s.create(6), Err(SessionsFull)),
            "only logged-in sessions"
        );
        assert!(s.create(11).is_ok(), "expired sessions make room");
        assert_eq!(s.len(), 2);
        let (id2, _) = s.create(11).unwrap();
        let first = s.add_pending(&id2, pending(), 11).unwrap();
        for _ in 0..MAX_PENDING {
            s.add_pending(&id2, pending(), 11).unwrap();
        }
        assert!(s.take_pending(&id2, &first, 11).is_none(), "oldest dropped");
        assert!(s.get(&id, 11).is_none());
    }
}
