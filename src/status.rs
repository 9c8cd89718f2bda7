//! status: what the components report about themselves, for the web page, the JSON API and
//! the metrics. Each component registers once and publishes its `ComponentStatus` through a
//! watch channel; readers take a copy of all of them. Nothing here is on the DNS path.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::watch;

/// One component's view of itself.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ComponentStatus {
    /// False when the component cannot do its job right now (the engine is unreachable,
    /// the listeners are down). `/health` turns 503 only for components marked `critical`.
    pub healthy: bool,
    /// Whether an unhealthy state makes the whole daemon unhealthy.
    pub critical: bool,
    /// A short word for humans: `connected`, `watching`, `waiting for directory`...
    pub state: String,
    /// Component-specific fields, shown as they are by the API.
    pub details: serde_json::Value,
    /// Monotonic counters exported as metrics `joyride_<component>_<name>_total`.
    pub counters: BTreeMap<String, u64>,
}

/// A cluster member as the page and `/dns/cluster` show it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ClusterMember {
    pub name: String,
    pub address: Option<SocketAddr>,
    /// `alive`, `suspect`, `dead` or `left`.
    pub state: String,
    /// How many records this member publishes.
    pub records: usize,
    pub last_seen: Option<SystemTime>,
    /// True for this node.
    pub local: bool,
}

/// Every component's status channel.
#[derive(Default)]
pub struct StatusBoard {
    components: Mutex<BTreeMap<String, watch::Receiver<ComponentStatus>>>,
    members: Mutex<Option<watch::Receiver<Vec<ClusterMember>>>>,
}

impl StatusBoard {
    /// Registers a component; it publishes its status through the returned sender.
    pub fn register(&self, name: &str, initial: ComponentStatus) -> watch::Sender<ComponentStatus> {
        let (tx, rx) = watch::channel(initial);
        self.components
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), rx);
        tx
    }

    /// The current status of every component, by name.
    pub fn components(&self) -> BTreeMap<String, ComponentStatus> {
        self.components
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.borrow().clone()))
            .collect()
    }

    /// The cluster registers its member list here; without a cluster there is none.
    pub fn set_members(&self, rx: watch::Receiver<Vec<ClusterMember>>) {
        *self.members.lock().unwrap_or_else(|e| e.into_inner()) = Some(rx);
    }

    /// Cluster members, or `None` when clustering is off.
    pub fn members(&self) -> Option<Vec<ClusterMember>> {
        self.members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|rx| rx.borrow().clone())
    }
}
