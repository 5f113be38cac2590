//! [`UserStore`]: the users who sign in (clinicians, patients).

use std::future::Future;

use super::StoreResult;
use crate::users::User;

/// The users of the sign-in page and the EHR simulator.
pub trait UserStore: Send + Sync {
    /// Inserts a user; false when the username is taken.
    fn insert_user(&self, user: &User) -> impl Future<Output = StoreResult<bool>> + Send;
    fn user_by_username(&self, username: &str) -> impl Future<Output = StoreResult<Option<User>>> + Send;
    fn user(&self, id: &str) -> impl Future<Output = StoreResult<Option<User>>> + Send;
    /// Every user, by username.
    fn users(&self) -> impl Future<Output = StoreResult<Vec<User>>> + Send;
    /// The user whose `fhirUser` is `fhir_user` (`Practitioner/…`, `Patient/…`), if any.
    fn user_by_fhir_user(&self, fhir_user: &str) -> impl Future<Output = StoreResult<Option<User>>> + Send;
}
