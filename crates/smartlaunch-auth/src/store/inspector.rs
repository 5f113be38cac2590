//! [`InspectorStore`]: the launch inspector's records: events per launch, the clients' trace
//! switches and launches made by hand that a switch traced.

use std::future::Future;

use super::{HandTrace, StoreResult};
use crate::inspect::{LaunchEvent, LaunchRecord};
use crate::launch::Launch;
use crate::UnixTime;

/// What the launch inspector keeps.
pub trait InspectorStore: Send + Sync {
    /// Appends a request to a launch's inspector record.  The store may write it later, off the
    /// request path (and drop it, counted, when it is overwhelmed); reads of the record see
    /// every event recorded before them.  A launch keeps at most
    /// [`MAX_EVENTS_PER_TRACE`](crate::retention::MAX_EVENTS_PER_TRACE) events, the newest.
    fn record_event(&self, trace: &str, event: &LaunchEvent) -> impl Future<Output = StoreResult<()>> + Send;
    /// The launch whose inspector key is `trace`.
    fn launch_by_trace(&self, trace: &str) -> impl Future<Output = StoreResult<Option<Launch>>> + Send;
    /// A user's newest launches (those that name the user), newest first.
    fn user_launches(&self, user_id: &str, limit: i64) -> impl Future<Output = StoreResult<Vec<Launch>>> + Send;
    /// Turns a client's trace switch on until `until`, or off (`None`).
    fn set_trace_switch(
        &self,
        client_id: &str,
        until: Option<UnixTime>,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// The clients whose trace switch is on at `now`, with until when.
    fn trace_switches(&self, now: UnixTime) -> impl Future<Output = StoreResult<Vec<(String, UnixTime)>>> + Send;
    fn insert_hand_trace(&self, trace: &HandTrace) -> impl Future<Output = StoreResult<()>> + Send;
    fn hand_trace(&self, trace_id: &str) -> impl Future<Output = StoreResult<Option<HandTrace>>> + Send;
    /// The newest hand-made traced launches, newest first (the launcher's list).
    fn recent_hand_traces(&self, limit: i64) -> impl Future<Output = StoreResult<Vec<HandTrace>>> + Send;
    /// A launch's inspector record, oldest first.
    fn launch_events(&self, trace: &str) -> impl Future<Output = StoreResult<Vec<LaunchEvent>>> + Send;
    /// A launch's inspector record, oldest first, with the number of its events dropped (over
    /// the cap, too old, or lost under overload).
    fn launch_record(&self, trace: &str) -> impl Future<Output = StoreResult<LaunchRecord>> + Send;
}
