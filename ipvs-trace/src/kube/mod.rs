//! Kubernetes names for IPVS addresses: the [`index`] of slim [`objects`], fed by an offline
//! [`snapshot`] (`--kube-snapshot`) or by live [`watch`]es on their own thread ([`live`]);
//! [`source`] picks one from the command line and the environment.
//!
//! The event loop only ever reads the index, under a short read lock, and never waits for the
//! API: an address that is not (yet) known prints raw.

pub mod index;
pub mod live;
pub mod objects;
pub mod snapshot;
pub mod source;
pub mod watch;

use std::sync::{Arc, PoisonError, RwLock};

pub use index::{BackendName, Change, ClientName, Index, ServiceName};
pub use objects::{Kind, Object, ObjectKey, ServiceType};

use crate::events::Event;

/// The index as shared between the event loop and the watches. Writers hold the lock for one
/// [`Change`] at a time.
pub type SharedIndex = Arc<RwLock<Index>>;

/// The names of one event's addresses, as far as the index knows them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Names {
    pub service: Option<ServiceName>,
    pub backend: Option<BackendName>,
    pub client: Option<ClientName>,
}

impl Names {
    /// Nothing known.
    pub const NONE: Names = Names {
        service: None,
        backend: None,
        client: None,
    };

    /// Looks the event's addresses up.
    #[must_use]
    pub fn resolve(index: &Index, event: &Event) -> Names {
        index.names(event)
    }

    /// Looks the event's addresses up in a shared index. A writer that panicked left the index
    /// as consistent as any single change leaves it, so a poisoned lock is still read.
    #[must_use]
    pub fn resolve_shared(index: &SharedIndex, event: &Event) -> Names {
        let index = index.read().unwrap_or_else(PoisonError::into_inner);
        Names::resolve(&index, event)
    }

    /// `namespace/name` of the backend pod.
    #[must_use]
    pub fn backend_pod(&self) -> Option<&str> {
        self.backend.as_ref().and_then(|b| b.pod.as_deref())
    }

    /// The backend's node: the endpoint's nodeName.
    #[must_use]
    pub fn backend_node(&self) -> Option<&str> {
        self.backend.as_ref().and_then(|b| b.node.as_deref())
    }

    /// `namespace/name` of the client pod (`None` for node addresses and unknown clients).
    #[must_use]
    pub fn client_pod(&self) -> Option<&str> {
        match &self.client {
            Some(ClientName::Pod { pod, .. }) => Some(pod),
            _ => None,
        }
    }

    /// The client as a name: its pod, or its node.
    #[must_use]
    pub fn client_label(&self) -> Option<&str> {
        match &self.client {
            Some(ClientName::Pod { pod, .. }) => Some(pod),
            Some(ClientName::Node(node)) => Some(node),
            None => None,
        }
    }
}

/// The namespace part of `namespace/name`.
#[must_use]
pub fn namespace_of(qualified: &str) -> Option<&str> {
    qualified.split_once('/').map(|(ns, _)| ns)
}
