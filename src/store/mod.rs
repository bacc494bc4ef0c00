//! Shared state that several replicas of a service may keep in one place: the outbound token
//! cache and policy versions (and, later, issuer grants).
//!
//! Each piece of state is a trait with an in-memory default. [`MemoryTokenStore`] serves one
//! process (several [`TokenManager`](crate::outbound::TokenManager)s in one process can share
//! it). With feature `redis`, `RedisTokenStore` (the token cache, values encrypted) and
//! `RedisPolicyVersions` (for [`PolicyVersionLayer`](crate::policy::PolicyVersionLayer)) keep
//! it in Redis for every replica; `RedisRevocations` (for
//! [`RevocationLayer`](crate::revocation::RevocationLayer)) reads what the issuer's grant store
//! revoked.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use tower_bearer::outbound::AccessToken;
//! use tower_bearer::store::{MemoryTokenStore, StoredToken, TokenStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let store: Arc<dyn TokenStore> = Arc::new(MemoryTokenStore::new());
//! let token = AccessToken::bearer("abc", 1_900_000_000);
//! let stored = StoredToken::new(token, 1_899_999_940);
//! store.put("k", stored.clone(), Duration::from_secs(60)).await.unwrap();
//! assert_eq!(store.get("k").await.unwrap().unwrap().token().value(), "abc");
//!
//! // Compare-and-delete: only the token that is still current is removed.
//! assert!(!store.delete_if("k", "not-its-fingerprint").await.unwrap());
//! assert!(store.delete_if("k", stored.fingerprint()).await.unwrap());
//! assert!(store.get("k").await.unwrap().is_none());
//!
//! // One replica fetches: the lock has an owner and a TTL.
//! assert!(store.try_lock("k", "replica-a", Duration::from_secs(5)).await.unwrap());
//! assert!(!store.try_lock("k", "replica-b", Duration::from_secs(5)).await.unwrap());
//! store.unlock("k", "replica-a").await.unwrap();
//! assert!(store.try_lock("k", "replica-b", Duration::from_secs(5)).await.unwrap());
//! # }
//! ```

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub(crate) mod redis;
mod token;

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
#[doc(inline)]
pub use self::redis::{RedisPolicyVersions, RedisRevocations, RedisTokenStore};
pub(crate) use token::hex as hex_digest;
#[doc(inline)]
pub use token::{MemoryTokenStore, StoreError, StoredToken, TokenStore};
