//! The auth admin API ([`Client::auth`](crate::Client::auth)): turning auth on and off,
//! users, roles and their permissions. Every refusal is typed: [`Error::Server`] with
//! [`ServerCode::PermissionDenied`], `AuthFailed`, `UserNotFound`, `RoleNotFound`,
//! `UserAlreadyExists`, `AuthNotEnabled`, `InvalidAuthToken`, `RootUserNotExist`, ...

use std::time::Duration;

use grpcio::{CallOption, ClientUnaryReceiver};

use crate::call::{Caller, Revisioned, Rpc, Stubs};
use crate::error::{Error, Result};
use crate::proto::auth as authpb;
use crate::proto::rpc;
#[cfg(doc)]
use crate::ServerCode;

/// The auth admin API: cheap to clone. Changes need the root role; etcd refuses them with
/// [`ServerCode::PermissionDenied`] otherwise.
#[derive(Debug, Clone)]
pub struct Auth {
    caller: Caller,
    timeout: Duration,
}

/// Whether auth is on, and the auth store's revision (it moves with every change of
/// users, roles and permissions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthStatus {
    /// Auth is on.
    pub enabled: bool,
    /// The auth store's revision.
    pub revision: u64,
}

/// What a permission allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Reads.
    Read,
    /// Writes.
    Write,
    /// Reads and writes.
    ReadWrite,
}

/// A permission of a role: an access over a key, a range or a prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Permission {
    access: Access,
    key: Vec<u8>,
    range_end: Vec<u8>,
}

impl Permission {
    /// `access` over the one key `key`.
    pub fn new(access: Access, key: impl Into<Vec<u8>>) -> Permission {
        Permission {
            access,
            key: key.into(),
            range_end: Vec::new(),
        }
    }

    /// Reads of `key`.
    pub fn read(key: impl Into<Vec<u8>>) -> Permission {
        Permission::new(Access::Read, key)
    }

    /// Writes of `key`.
    pub fn write(key: impl Into<Vec<u8>>) -> Permission {
        Permission::new(Access::Write, key)
    }

    /// Reads and writes of `key`.
    pub fn read_write(key: impl Into<Vec<u8>>) -> Permission {
        Permission::new(Access::ReadWrite, key)
    }

    /// Over every key that starts with the key (the empty key: every key).
    pub fn prefix(mut self) -> Permission {
        self.range_end = crate::kv::prefix_end(&self.key);
        self
    }

    /// Over the keys from the key up to `end`, not included.
    pub fn range_to(mut self, end: impl Into<Vec<u8>>) -> Permission {
        self.range_end = end.into();
        self
    }

    /// What it allows.
    pub fn access(&self) -> Access {
        self.access
    }

    /// The key, or the range's first key.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The range's end (not included); empty for one key.
    pub fn range_end(&self) -> &[u8] {
        &self.range_end
    }

    fn to_proto(&self) -> authpb::Permission {
        authpb::Permission {
            permType: match self.access {
                Access::Read => authpb::Permission_Type::READ,
                Access::Write => authpb::Permission_Type::WRITE,
                Access::ReadWrite => authpb::Permission_Type::READWRITE,
            },
            key: self.key.clone(),
            range_end: self.range_end.clone(),
            ..Default::default()
        }
    }

    fn from_proto(p: &authpb::Permission) -> Permission {
        Permission {
            access: match p.permType {
                authpb::Permission_Type::READ => Access::Read,
                authpb::Permission_Type::WRITE => Access::Write,
                authpb::Permission_Type::READWRITE => Access::ReadWrite,
            },
            key: p.key.clone(),
            range_end: p.range_end.clone(),
        }
    }
}

fn named(name: impl Into<String>, what: &'static str) -> Result<String> {
    let name = name.into();
    if name.is_empty() {
        return Err(Error::InvalidArgument {
            argument: what,
            reason: "must not be empty".to_owned(),
        });
    }
    Ok(name)
}

impl Auth {
    pub(crate) fn new(caller: Caller, timeout: Duration) -> Auth {
        caller.note_timeout(timeout);
        Auth { caller, timeout }
    }

    /// A handle whose calls wait `timeout` instead of the client's request timeout.
    pub fn with_timeout(&self, timeout: Duration) -> Auth {
        Auth::new(self.caller.clone(), timeout)
    }

    /// Sends one auth change (at most once: see the retry table).
    fn change<R>(
        &self,
        start: impl Fn(&Stubs, CallOption) -> grpcio::Result<ClientUnaryReceiver<R>>,
    ) -> Result<()>
    where
        R: Revisioned + Unpin,
    {
        self.caller
            .unary(Rpc::AuthChange, self.timeout, start)
            .map(drop)
    }

    /// Turns auth on (a `root` user with the `root` role must exist:
    /// [`ServerCode::RootUserNotExist`] otherwise). A client with a user authenticates on
    /// its next call.
    pub fn enable(&self) -> Result<()> {
        let request = rpc::AuthEnableRequest::new();
        self.change(|s, o| s.auth.auth_enable_async_opt(&request, o))
    }

    /// Turns auth off.
    pub fn disable(&self) -> Result<()> {
        let request = rpc::AuthDisableRequest::new();
        self.change(|s, o| s.auth.auth_disable_async_opt(&request, o))
    }

    /// Whether auth is on, and the auth store's revision. etcd 3.4 has no such call:
    /// [`Error::NotSupported`] there.
    pub fn status(&self) -> Result<AuthStatus> {
        let request = rpc::AuthStatusRequest::new();
        let r = self.caller.unary(Rpc::AuthRead, self.timeout, |s, o| {
            s.auth.auth_status_async_opt(&request, o)
        })?;
        Ok(AuthStatus {
            enabled: r.enabled,
            revision: r.authRevision,
        })
    }

    /// Adds a user with a password.
    pub fn user_add(&self, name: impl Into<String>, password: impl Into<String>) -> Result<()> {
        self.add_user(named(name, "user name")?, password.into(), false)
    }

    /// Adds a user without a password: it cannot authenticate with one, only with a client
    /// certificate whose common name is its name.
    pub fn user_add_without_password(&self, name: impl Into<String>) -> Result<()> {
        self.add_user(named(name, "user name")?, String::new(), true)
    }

    fn add_user(&self, name: String, password: String, no_password: bool) -> Result<()> {
        let request = rpc::AuthUserAddRequest {
            name,
            password,
            options: protobuf::SingularPtrField::some(authpb::UserAddOptions {
                no_password,
                ..Default::default()
            }),
            ..Default::default()
        };
        self.change(|s, o| s.auth.user_add_async_opt(&request, o))
    }

    /// The roles of a user.
    pub fn user_get(&self, name: impl Into<String>) -> Result<Vec<String>> {
        let request = rpc::AuthUserGetRequest {
            name: named(name, "user name")?,
            ..Default::default()
        };
        let r = self.caller.unary(Rpc::AuthRead, self.timeout, |s, o| {
            s.auth.user_get_async_opt(&request, o)
        })?;
        Ok(r.roles.into_vec())
    }

    /// Every user's name.
    pub fn user_list(&self) -> Result<Vec<String>> {
        let request = rpc::AuthUserListRequest::new();
        let r = self.caller.unary(Rpc::AuthRead, self.timeout, |s, o| {
            s.auth.user_list_async_opt(&request, o)
        })?;
        Ok(r.users.into_vec())
    }

    /// Deletes a user.
    pub fn user_delete(&self, name: impl Into<String>) -> Result<()> {
        let request = rpc::AuthUserDeleteRequest {
            name: named(name, "user name")?,
            ..Default::default()
        };
        self.change(|s, o| s.auth.user_delete_async_opt(&request, o))
    }

    /// Sets a user's password.
    pub fn user_change_password(
        &self,
        name: impl Into<String>,
        password: impl Into<String>,
    ) -> Result<()> {
        let request = rpc::AuthUserChangePasswordRequest {
            name: named(name, "user name")?,
            password: password.into(),
            ..Default::default()
        };
        self.change(|s, o| s.auth.user_change_password_async_opt(&request, o))
    }

    /// Grants a role to a user.
    pub fn user_grant_role(&self, user: impl Into<String>, role: impl Into<String>) -> Result<()> {
        let request = rpc::AuthUserGrantRoleRequest {
            user: named(user, "user name")?,
            role: named(role, "role name")?,
            ..Default::default()
        };
        self.change(|s, o| s.auth.user_grant_role_async_opt(&request, o))
    }

    /// Revokes a role from a user.
    pub fn user_revoke_role(&self, user: impl Into<String>, role: impl Into<String>) -> Result<()> {
        let request = rpc::AuthUserRevokeRoleRequest {
            name: named(user, "user name")?,
            role: named(role, "role name")?,
            ..Default::default()
        };
        self.change(|s, o| s.auth.user_revoke_role_async_opt(&request, o))
    }

    /// Adds a role.
    pub fn role_add(&self, name: impl Into<String>) -> Result<()> {
        let request = rpc::AuthRoleAddRequest {
            name: named(name, "role name")?,
            ..Default::default()
        };
        self.change(|s, o| s.auth.role_add_async_opt(&request, o))
    }

    /// The permissions of a role.
    pub fn role_get(&self, name: impl Into<String>) -> Result<Vec<Permission>> {
        let request = rpc::AuthRoleGetRequest {
            role: named(name, "role name")?,
            ..Default::default()
        };
        let r = self.caller.unary(Rpc::AuthRead, self.timeout, |s, o| {
            s.auth.role_get_async_opt(&request, o)
        })?;
        Ok(r.perm.iter().map(Permission::from_proto).collect())
    }

    /// Every role's name.
    pub fn role_list(&self) -> Result<Vec<String>> {
        let request = rpc::AuthRoleListRequest::new();
        let r = self.caller.unary(Rpc::AuthRead, self.timeout, |s, o| {
            s.auth.role_list_async_opt(&request, o)
        })?;
        Ok(r.roles.into_vec())
    }

    /// Deletes a role.
    pub fn role_delete(&self, name: impl Into<String>) -> Result<()> {
        let request = rpc::AuthRoleDeleteRequest {
            role: named(name, "role name")?,
            ..Default::default()
        };
        self.change(|s, o| s.auth.role_delete_async_opt(&request, o))
    }

    /// Grants a permission to a role.
    pub fn role_grant_permission(
        &self,
        role: impl Into<String>,
        permission: &Permission,
    ) -> Result<()> {
        let request = rpc::AuthRoleGrantPermissionRequest {
            name: named(role, "role name")?,
            perm: protobuf::SingularPtrField::some(permission.to_proto()),
            ..Default::default()
        };
        self.change(|s, o| s.auth.role_grant_permission_async_opt(&request, o))
    }

    /// Revokes from a role the permission over `permission`'s key or range (its access is
    /// not looked at: etcd revokes by the key range).
    pub fn role_revoke_permission(
        &self,
        role: impl Into<String>,
        permission: &Permission,
    ) -> Result<()> {
        let request = rpc::AuthRoleRevokePermissionRequest {
            role: named(role, "role name")?,
            key: permission.key.clone(),
            range_end: permission.range_end.clone(),
            ..Default::default()
        };
        self.change(|s, o| s.auth.role_revoke_permission_async_opt(&request, o))
    }
}
