//! Remembered consent (issue 9, item 5): when a remembered approval may skip the consent page,
//! and the launcher's “forget remembered consent”.

use crate::authorize::Prompt;
use crate::error::StoreError;
use crate::launch::LaunchOptions;
use crate::store::AuthStore;
use crate::{AuthService, UnixTime};

/// Why the consent page is shown even when the user's remembered consent covers the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentForced {
    /// OpenID Connect `prompt=consent` (OIDC Core §3.1.2.1).
    Prompt,
    /// The launch's developer option "always ask for consent".
    AlwaysAsk,
}

/// Whether a request must show the consent page whatever the user allowed before (`None`: a
/// remembered consent that covers the requested scopes skips it).  Either way the choice made
/// on the page is remembered for the user and the app.
pub fn consent_forced(prompt: Option<Prompt>, options: &LaunchOptions) -> Option<ConsentForced> {
    match prompt {
        Some(Prompt::Consent) => Some(ConsentForced::Prompt),
        _ if options.always_ask_consent => Some(ConsentForced::AlwaysAsk),
        _ => None,
    }
}

impl<S: AuthStore> AuthService<S> {
    /// The launcher's “forget remembered consent” for a user and an app: what the user's own
    /// “Revoke access” on `/account` does (the remembered consent is deleted and every token the
    /// user gave the app is revoked), so the next launch shows the consent page again.
    /// Answers the scopes that were remembered, if any.
    pub async fn forget_consent(
        &self,
        user_id: &str,
        client_id: &str,
        now: UnixTime,
    ) -> Result<Option<String>, StoreError> {
        let remembered = self.store.consent(user_id, client_id).await?;
        self.revoke_user_client(user_id, client_id, now).await?;
        Ok(remembered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn always_ask_forces_the_consent_page_like_prompt_consent() {
        let plain = LaunchOptions::default();
        let always = LaunchOptions { always_ask_consent: true, ..Default::default() };
        assert_eq!(consent_forced(None, &plain), None, "a remembered consent may skip the page");
        assert_eq!(consent_forced(Some(Prompt::Login), &plain), None);
        assert_eq!(consent_forced(None, &always), Some(ConsentForced::AlwaysAsk));
        assert_eq!(consent_forced(Some(Prompt::Login), &always), Some(ConsentForced::AlwaysAsk));
        assert_eq!(consent_forced(Some(Prompt::Consent), &plain), Some(ConsentForced::Prompt));
        assert_eq!(consent_forced(Some(Prompt::Consent), &always), Some(ConsentForced::Prompt));
    }

    #[test]
    fn always_ask_cannot_be_combined_with_skip_consent() {
        let both = LaunchOptions { skip_consent: true, always_ask_consent: true, ..Default::default() };
        let err = both.check().unwrap_err();
        assert!(err.contains("skip consent") && err.contains("always ask"), "{err}");
        assert!(LaunchOptions { always_ask_consent: true, ..Default::default() }.check().is_ok());
        assert!(LaunchOptions { skip_consent: true, ..Default::default() }.check().is_ok());
    }

    #[test]
    fn always_ask_is_off_unless_the_launch_api_json_says_so() {
        let old: LaunchOptions = serde_json::from_str(r#"{"skip_consent": true}"#).unwrap();
        assert!(!old.always_ask_consent);
        let new: LaunchOptions = serde_json::from_str(r#"{"always_ask_consent": true}"#).unwrap();
        assert!(new.always_ask_consent);
        assert!(serde_json::from_str::<LaunchOptions>(r#"{"always_ask": true}"#).is_err(), "unknown fields");
    }
}
