//! SMART App Launch 2.2 scopes: the grammar of spec digest §2 (v1, v2 and granular
//! `?param=value` scopes), scope sets, negotiation against what a client may have, and the
//! question the resource server asks: "which granted scopes allow interaction X on type T?".
//!
//! Pure functions only: no I/O, no clock.

mod describe;
mod scope;
mod set;

pub use describe::Reader;
pub use scope::{Interaction, Interactions, Level, ResourceScope, Scope, ScopeError};
pub use set::ScopeSet;
