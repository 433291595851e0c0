//! The user's token: sent with every call and every stream open, and renewed, once per
//! refusal and by one caller at a time, when a member says it is invalid, old or missing.

use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::error::{Error, Result, ServerCode};
use crate::proto::rpc::{AuthenticateRequest, AuthenticateResponse};
use crate::secret::Secret;

/// Who the client is to etcd: a user that authenticates (and again when its token is
/// refused), or a token given as it is.
pub(crate) struct Tokens {
    user: Option<(String, Secret)>,
    current: RwLock<Option<Arc<Secret>>>,
    /// Held by the one caller that authenticates; the others wait for its token.
    renewing: Mutex<()>,
}

impl Tokens {
    /// A user that authenticates with `password`.
    pub(crate) fn user(name: String, password: Secret) -> Tokens {
        Tokens {
            user: Some((name, password)),
            current: RwLock::new(None),
            renewing: Mutex::new(()),
        }
    }

    /// A token given by the user, never renewed.
    pub(crate) fn given(token: Secret) -> Tokens {
        Tokens {
            user: None,
            current: RwLock::new(Some(Arc::new(token))),
            renewing: Mutex::new(()),
        }
    }

    /// The token to send now, if there is one.
    pub(crate) fn current(&self) -> Option<Arc<Secret>> {
        self.current.read().clone()
    }

    /// Authenticates again with `authenticate` (the call, sent by the call layer), unless
    /// another caller did since `stale` was sent: then its token is the one to use.
    /// `Ok(false)` when nothing can be renewed (a token given by the user); the error of
    /// the authentication when it fails.
    pub(crate) fn renew(
        &self,
        stale: Option<&Arc<Secret>>,
        authenticate: impl FnOnce(&AuthenticateRequest) -> Result<AuthenticateResponse>,
    ) -> Result<bool> {
        let Some((name, password)) = &self.user else {
            return Ok(false);
        };
        let _one = self.renewing.lock();
        let now = self.current();
        let moved_on = match (&now, stale) {
            (Some(now), Some(stale)) => !Arc::ptr_eq(now, stale),
            (Some(_), None) => true,
            (None, _) => false,
        };
        if moved_on {
            return Ok(true);
        }
        let request = AuthenticateRequest {
            name: name.clone(),
            password: String::from_utf8_lossy(&password.0).into_owned(),
            ..Default::default()
        };
        let response = match authenticate(&request) {
            Ok(response) => response,
            // Auth is off: calls go without a token until it is turned on (then they are
            // refused for the missing token, and the client authenticates), as in Go's
            // client.
            Err(e) if e.code() == Some(ServerCode::AuthNotEnabled) => {
                *self.current.write() = None;
                return Ok(true);
            }
            Err(e) => return Err(e),
        };
        let token = Secret(response.token.into_bytes());
        if !sendable(&token.0) {
            return Err(Error::InvalidArgument {
                argument: "token",
                reason: "the server answered a token that is not printable ASCII".to_owned(),
            });
        }
        log::debug!("etcd: authenticated as {name}");
        *self.current.write() = Some(Arc::new(token));
        Ok(true)
    }
}

/// True when a member refused a call for its token, so that a new one may let it through
/// (see [`ServerCode::refuses_token`]).
pub(crate) fn token_refused(error: &Error) -> bool {
    error.code().is_some_and(ServerCode::refuses_token)
}

/// True if `token` can go in a gRPC header: printable ASCII, not empty.
pub(crate) fn sendable(token: &[u8]) -> bool {
    !token.is_empty() && token.iter().all(|b| (0x21..0x7f).contains(b))
}
