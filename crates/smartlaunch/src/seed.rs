//! First-start seeding: the demo data set and the demo accounts.

use smartlaunch_auth::store::UserStore;
use smartlaunch_auth::users::{hash_password, User};
use smartlaunch_fhir::demo::DemoData;
use smartlaunch_fhir::store::ResourceStore;
use smartlaunch_store::Db;

/// The demo accounts: (username, password).
pub const DEMO_ACCOUNTS: [(&str, &str); 2] = [("clinician", "clinician"), ("patient", "patient")];

/// Seeds the demo data and accounts into an empty database; leaves a seeded one alone.  On
/// PostgreSQL, nodes starting together seed one after the other under the seeding lock, so
/// the data is stored once (the later ones find it there).
pub async fn seed_demo(db: &Db, now_instant: &str) -> anyhow::Result<()> {
    let lock = db.seeding_lock().await?;
    let seeded = seed_unless_seeded(db, now_instant).await;
    if let Some(lock) = lock {
        lock.release().await;
    }
    seeded
}

async fn seed_unless_seeded(db: &Db, now_instant: &str) -> anyhow::Result<()> {
    let empty = db.count().await? == 0;
    let mut accounts_missing = false;
    for (username, _) in DEMO_ACCOUNTS {
        accounts_missing |= db.user_by_username(username).await?.is_none();
    }
    if !empty && !accounts_missing {
        return Ok(());
    }
    let demo = smartlaunch_fhir::demo::generate();
    if empty {
        db.put_all(demo.resources.clone(), now_instant).await?;
    }
    for user in demo_users(&demo).await? {
        if db.user_by_username(&user.username).await?.is_none() {
            db.insert_user(&user).await?;
        }
    }
    Ok(())
}

/// The demo accounts as new users (password = username), each standing for its resource of
/// the demo data.
pub async fn demo_users(demo: &DemoData) -> anyhow::Result<Vec<User>> {
    let name_of = |reference: &str| {
        demo.resources
            .iter()
            .find(|r| {
                format!("{}/{}", r["resourceType"].as_str().unwrap_or_default(), r["id"].as_str().unwrap_or_default())
                    == reference
            })
            .and_then(display_name)
            .unwrap_or_else(|| reference.to_owned())
    };
    let mut users = Vec::new();
    for (username, fhir_user) in [("clinician", demo.clinician.as_str()), ("patient", demo.patient.as_str())] {
        users.push(new_user(username, username, fhir_user, &name_of(fhir_user)).await?);
    }
    Ok(users)
}

/// A user with an argon2id password hash (computed off the async runtime).
async fn new_user(username: &str, password: &str, fhir_user: &str, display_name: &str) -> anyhow::Result<User> {
    let password = password.to_owned();
    let password_hash = tokio::task::spawn_blocking(move || hash_password(&password)).await?;
    Ok(User {
        id: format!("user-{}", smartlaunch_auth::secrets::random_token(9)),
        username: username.to_owned(),
        password_hash,
        fhir_user: fhir_user.to_owned(),
        display_name: display_name.to_owned(),
    })
}

/// Adds a user with an argon2id password hash (computed off the async runtime).
/// Returns false when the username is taken.
pub async fn add_user(
    db: &Db,
    username: &str,
    password: &str,
    fhir_user: &str,
    display_name: &str,
) -> anyhow::Result<bool> {
    let user = new_user(username, password, fhir_user, display_name).await?;
    Ok(db.insert_user(&user).await?)
}

/// "Given Family" (with a prefix such as "Dr." when present) of a Patient or Practitioner.
pub fn display_name(resource: &serde_json::Value) -> Option<String> {
    let name = resource.get("name")?.get(0)?;
    if let Some(text) = name.get("text").and_then(|t| t.as_str()) {
        return Some(text.to_owned());
    }
    let mut parts: Vec<&str> = Vec::new();
    for key in ["prefix", "given"] {
        if let Some(list) = name.get(key).and_then(|v| v.as_array()) {
            parts.extend(list.iter().filter_map(|v| v.as_str()));
        }
    }
    if let Some(f) = name.get("family").and_then(|v| v.as_str()) {
        parts.push(f);
    }
    (!parts.is_empty()).then(|| parts.join(" "))
}
