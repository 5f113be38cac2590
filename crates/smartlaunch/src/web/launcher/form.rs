//! The launcher's form for app launches: what it asks for becomes a [`NewLaunch`].  The app is a
//! registered one, or an ad-hoc one given by its launch URL and redirect URI (and, optionally,
//! the client_id the app already sends); the patient is an id or a name to search.

use smartlaunch_auth::client::{Client, RegistrationRequest, TokenEndpointAuthMethod};
use smartlaunch_auth::launch::{FhirContextItem, LaunchContext, LaunchOptions, SimulatedError};
use smartlaunch_auth::service::{is_chosen_client_id, NewLaunch, CHOSEN_CLIENT_ID_MAX};
use smartlaunch_auth::store::{ClientStore, PatientDirectory, UserStore};
use smartlaunch_auth::users::User;
use smartlaunch_fhir::store::ResourceStore;

use crate::server::App;
use crate::web::views::{self, PatientRow};
use crate::web::{field, reload_client_origins};

/// The reusable-launch lifetimes the launcher offers, in minutes (issue 9, "reusable launches").
pub(super) const REUSABLE_MINUTES: [i64; 3] = [10, 30, 60];

/// Patients offered when a name matches several.
const NAME_MATCHES: usize = 10;

/// Patients a name search looks through (those whose name has the search's longest word).
const NAME_SCAN: i64 = 200;

/// The app a launch is for, as the result card shows it.
pub(super) struct AppCard {
    pub(super) client_id: String,
    pub(super) name: String,
    /// Public (no client secret) or confidential.
    pub(super) public: bool,
    /// What the launcher did about the registration.
    pub(super) registration: Registration,
}

/// What the launcher did about the app's registration.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Registration {
    /// A registered app chosen in the list.
    Chosen,
    /// The ad-hoc app registered now.
    Registered,
    /// The ad-hoc app registered before with the same launch URL and redirect URI (and
    /// client_id): used again rather than duplicated.
    Reused,
}

impl AppCard {
    fn of(client: &Client, registration: Registration) -> AppCard {
        AppCard {
            client_id: client.client_id.clone(),
            name: client.metadata.client_name.clone(),
            public: client.metadata.token_endpoint_auth_method == TokenEndpointAuthMethod::None,
            registration,
        }
    }
}

/// A launch the form describes, with what the page needs to show it.
pub(super) struct Planned {
    pub(super) new: NewLaunch,
    pub(super) app: AppCard,
    /// Open it inside the EHR chart (or the portal) frame rather than a new tab.
    pub(super) in_frame: bool,
    pub(super) portal: bool,
    pub(super) user_name: String,
}

/// Why the form does not make a launch yet.
pub(super) enum NotYet {
    /// A mistake to correct, said plainly.
    Problem(String),
    /// The Patient field's name matched several patients: the developer picks one.
    PickPatient(Vec<PatientRow>),
}

impl From<String> for NotYet {
    fn from(problem: String) -> NotYet {
        NotYet::Problem(problem)
    }
}

impl From<&str> for NotYet {
    fn from(problem: &str) -> NotYet {
        NotYet::Problem(problem.to_owned())
    }
}

/// The launch the form describes; a launch URL + redirect URI use (or register) an ad-hoc app.
pub(super) async fn plan(app: &App, form: &[(String, String)]) -> Result<Planned, NotYet> {
    let text = |name: &str| field(form, name).map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
    let launch_type = text("launch_type").unwrap_or_default();
    let (portal, standalone) = match launch_type.as_str() {
        "ehr" => (false, false),
        "portal" => (true, false),
        "provider-standalone" => (false, true),
        "patient-standalone" => (true, true),
        other => return Err(format!("no launch type “{other}”").into()),
    };
    let in_frame = field(form, "open_in") == Some("frame");
    if in_frame && standalone {
        return Err("the EHR frame opens EHR and portal launches; a standalone launch opens in a new tab".into());
    }
    let reusable_for = match text("reuse").as_deref() {
        None | Some("once") => None,
        Some(m) => match m.parse::<i64>().ok().filter(|m| REUSABLE_MINUTES.contains(m)) {
            _ if standalone => {
                return Err("a standalone launch is reusable already (for a day); “reusable” is for EHR launches".into())
            }
            Some(m) => Some(m * 60),
            None => return Err(format!("a reusable launch lasts 10, 30 or 60 minutes, not “{m}”").into()),
        },
    };
    let app_card = match (text("client_id"), text("launch_uri"), text("redirect_uri")) {
        (_, Some(launch_uri), Some(redirect_uri)) => {
            // Registering an app here is registration too: the registration token guards it.
            app.auth
                .check_registration_token(field(form, "registration_token").filter(|t| !t.is_empty()))
                .map_err(|e| e.description().to_owned())?;
            ad_hoc_client(app, text("own_client_id"), launch_uri, redirect_uri).await?
        }
        (Some(client_id), None, None) => match app.auth.client(&client_id, app.clock.now()).await {
            Ok(Some(client)) => AppCard::of(&client, Registration::Chosen),
            Ok(None) => return Err(format!("no registered app has the client_id “{client_id}”").into()),
            Err(e) => return Err(e.to_string().into()),
        },
        _ => return Err("choose a registered app, or give both a launch URL and a redirect URI".into()),
    };
    let username = text("user").ok_or("choose the user who launches")?;
    let user: User = app
        .db
        .user_by_username(&username)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("there is no user “{username}”"))?;
    // Several patients (provider standalone): the picker offers only those.
    let patients = match text("patient_choice") {
        Some(picked) => vec![picked],
        None => patients(app, &text("patient").unwrap_or_default()).await?,
    };
    let (patient, patient_choices) = match (portal, user.patient_id(), patients.as_slice()) {
        (true, Some(own), _) => (Some(own.to_owned()), Vec::new()),
        (true, None, _) => return Err("a patient launch needs a patient user (fhirUser Patient/…)".into()),
        (false, Some(_), _) => return Err("a provider launch needs a practitioner user".into()),
        (false, None, [one]) => (Some(one.clone()), Vec::new()),
        (false, None, []) if in_frame => return Err("the EHR frame shows a patient's chart: choose the patient".into()),
        (false, None, []) => (None, Vec::new()),
        (false, None, _) if standalone => (None, patients.clone()),
        (false, None, _) => return Err("an EHR launch has one patient in context".into()),
    };
    let encounter = match (text("encounter").as_deref(), &patient) {
        (None | Some("none"), _) => None,
        (Some("latest"), Some(p)) => app
            .db
            .encounters_of(p)
            .await
            .map_err(|e| e.to_string())?
            .first()
            .and_then(|e| e["id"].as_str())
            .map(str::to_owned),
        (Some("pick"), Some(_)) => Some(text("encounter_id").ok_or("give the encounter id to use")?),
        (Some(_), _) => return Err("an encounter needs a patient".into()),
    };
    let fhir_context = text("fhir_context")
        .map(|lines| {
            lines
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(|reference| FhirContextItem { reference: Some(reference.to_owned()), ..Default::default() })
                .collect()
        })
        .unwrap_or_default();
    let simulate_error = match text("simulate_error") {
        None => None,
        Some(name) => Some(SimulatedError::from_name(&name).ok_or_else(|| format!("no simulated error “{name}”"))?),
    };
    // An EHR launch is for its user (who signs in, unless "skip sign-in" vouches for them); a
    // standalone one names a user only with "skip sign-in" (otherwise anyone may sign in).
    let skip_sign_in = field(form, "skip_sign_in") == Some("on");
    let new = NewLaunch {
        client_id: app_card.client_id.clone(),
        user_id: (!standalone || skip_sign_in).then(|| user.id.clone()),
        session_id: None,
        patient,
        encounter,
        context: LaunchContext {
            fhir_context,
            intent: text("intent"),
            // Inside the EHR frame the chart's own banner shows the patient (spec digest §1.6).
            need_patient_banner: Some(!in_frame),
            smart_style_url: Some(crate::web::ehr::style_url(app)),
            ..Default::default()
        },
        options: LaunchOptions {
            skip_consent: field(form, "skip_consent") == Some("on"),
            always_ask_consent: field(form, "always_ask_consent") == Some("on"),
            skip_sign_in,
            simulate_error,
        },
        standalone,
        patient_choices,
        reusable_for,
    };
    Ok(Planned { new, app: app_card, in_frame, portal, user_name: user.display_name })
}

/// The Patient field: comma-separated ids, or one name to search.  A known id is taken as is;
/// otherwise the text is a name: one match is used, several are offered, none is an error.
async fn patients(app: &App, field: &str) -> Result<Vec<String>, NotYet> {
    let entries: Vec<&str> = field.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
    let [one] = entries.as_slice() else {
        return Ok(entries.into_iter().map(str::to_owned).collect());
    };
    let one = one.chars().take(100).collect::<String>();
    if app.db.patient_exists(&one).await.map_err(|e| e.to_string())? {
        return Ok(vec![one]);
    }
    // Each word of the name must match ("Amy Shaw" and "shaw amy" find the same patient).
    let words: Vec<String> = one.to_lowercase().split_whitespace().map(str::to_owned).collect();
    let longest = words.iter().max_by_key(|w| w.len()).cloned().unwrap_or_default();
    let (found, _) = app.db.search_patients(&longest, 0, NAME_SCAN).await.map_err(|e| e.to_string())?;
    let mut matches: Vec<PatientRow> = found
        .iter()
        .map(views::patient_row)
        .filter(|p| {
            let name = p.name.to_lowercase();
            words.iter().all(|w| name.contains(w.as_str()))
        })
        .collect();
    match matches.len() {
        0 => Err(format!("no patient has the id “{one}” or a name matching it").into()),
        1 => Ok(matches.drain(..).map(|p| p.id).collect()),
        _ => {
            matches.truncate(NAME_MATCHES);
            Err(NotYet::PickPatient(matches))
        }
    }
}

/// The ad-hoc app for a launch URL and redirect URI typed into the launcher: the one registered
/// before with the same URLs (and the chosen client_id, if any), or a new public app — under
/// the chosen client_id when there is one and it is free.
async fn ad_hoc_client(
    app: &App,
    chosen: Option<String>,
    launch_uri: String,
    redirect_uri: String,
) -> Result<AppCard, String> {
    let same_urls = |c: &Client| {
        c.metadata.initiate_login_uri.as_deref() == Some(launch_uri.as_str())
            && c.metadata.redirect_uris == [redirect_uri.as_str()]
    };
    let name = format!("Launcher app at {launch_uri}");
    if let Some(id) = &chosen {
        if !is_chosen_client_id(id) {
            return Err(format!(
                "the client_id may have 1 to {CHOSEN_CLIENT_ID_MAX} letters, digits or . _ ~ - (no spaces or other characters)"
            ));
        }
        match app.auth.client(id, app.clock.now()).await.map_err(|e| e.to_string())? {
            Some(taken) if same_urls(&taken) => return Ok(AppCard::of(&taken, Registration::Reused)),
            Some(taken) => {
                return Err(format!(
                    "the client_id “{id}” is taken by the app “{}” (launch URL {}): pick that app in the App list, \
                     edit it in /apps, or choose another client_id",
                    taken.metadata.client_name,
                    taken.metadata.initiate_login_uri.as_deref().unwrap_or("none"),
                ))
            }
            None => {}
        }
    } else {
        let clients = app.db.clients().await.map_err(|e| e.to_string())?;
        let earlier = clients
            .iter()
            .filter(|c| c.metadata.client_name == name && c.registration_token_hash.is_none() && same_urls(c))
            .min_by_key(|c| c.created_at);
        if let Some(earlier) = earlier {
            return Ok(AppCard::of(earlier, Registration::Reused));
        }
    }
    let request = RegistrationRequest {
        client_name: Some(name),
        redirect_uris: Some(vec![redirect_uri]),
        grant_types: Some(vec!["authorization_code".into(), "refresh_token".into()]),
        token_endpoint_auth_method: Some("none".into()),
        initiate_login_uri: Some(launch_uri),
        ..Default::default()
    };
    let now = app.clock.now();
    let registered = match &chosen {
        Some(id) => app.auth.add_client_with_id(id, request, now).await,
        None => app.auth.add_client(request, now).await,
    }
    .map_err(|e| e.description().to_owned())?;
    reload_client_origins(app).await;
    Ok(AppCard::of(&registered.client, Registration::Registered))
}
