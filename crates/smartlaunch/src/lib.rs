//! The smartlaunch binary's library: configuration, start-up, demo seeding and the web layer
//! (axum routers and askama pages).  Integration tests start the real server through
//! [`server::start`] on an ephemeral port and talk to it over HTTP.

pub mod backend_cli;
pub mod clock;
pub mod demo_app;
mod exports;
pub mod import;
mod jwks_fetch;
pub mod log_writer;
pub mod nodes;
pub mod sandbox;
pub mod seed;
pub mod server;
mod web;

pub use clock::{Clock, SystemClock};
pub use server::{start, Running, Settings};
pub use web::client_addr::{ProxyRange, TrustedProxies};
pub use web::limits::RateLimits;
