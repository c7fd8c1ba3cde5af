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

use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

pub use index::{BackendName, Change, ClientName, Index, ServiceName};
pub use objects::{Kind, Object, ObjectKey, ServiceType};

use crate::events::Event;

/// The index as shared between the event loop and the watches. Writers hold the lock for one
/// [`Change`] at a time.
pub type SharedIndex = Arc<RwLock<Index>>;

/// Reads the shared index. A writer that panicked left the index as consistent as any single
/// change leaves it, so a poisoned lock is still read.
pub fn read(index: &SharedIndex) -> RwLockReadGuard<'_, Index> {
    index.read().unwrap_or_else(PoisonError::into_inner)
}

/// The names of one event's addresses, as far as the index knows them, borrowed from it: the
/// event loop holds the index's read lock from the lookup until the event is printed, so no
/// name is copied or reference-counted per event. [`OwnedNames`] is the copy for an event
/// that waits (`--nat`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Names<'a> {
    pub service: Option<&'a ServiceName>,
    pub backend: Option<&'a BackendName>,
    pub client: Option<&'a ClientName>,
}

impl<'a> Names<'a> {
    /// Nothing known.
    pub const NONE: Names<'static> = Names {
        service: None,
        backend: None,
        client: None,
    };

    /// Looks the event's addresses up.
    #[must_use]
    pub fn resolve(index: &'a Index, event: &Event) -> Names<'a> {
        index.names(event)
    }

    /// A copy that outlives the index's lock.
    #[must_use]
    pub fn owned(self) -> OwnedNames {
        OwnedNames {
            service: self.service.cloned(),
            backend: self.backend.cloned(),
            client: self.client.cloned(),
        }
    }

    /// `namespace/name` of the backend pod.
    #[must_use]
    pub fn backend_pod(&self) -> Option<&'a str> {
        self.backend.and_then(|b| b.pod.as_deref())
    }

    /// The backend's node: the endpoint's nodeName.
    #[must_use]
    pub fn backend_node(&self) -> Option<&'a str> {
        self.backend.and_then(|b| b.node.as_deref())
    }

    /// `namespace/name` of the client pod (`None` for node addresses and unknown clients).
    #[must_use]
    pub fn client_pod(&self) -> Option<&'a str> {
        match self.client {
            Some(ClientName::Pod { pod, .. }) => Some(pod),
            _ => None,
        }
    }

    /// The client as a name: its pod, or its node.
    #[must_use]
    pub fn client_label(&self) -> Option<&'a str> {
        match self.client {
            Some(ClientName::Pod { pod, .. }) => Some(pod),
            Some(ClientName::Node(node)) => Some(node),
            None => None,
        }
    }
}

/// [`Names`] that own their names: an event's names kept after the index's lock is released.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnedNames {
    pub service: Option<ServiceName>,
    pub backend: Option<BackendName>,
    pub client: Option<ClientName>,
}

impl OwnedNames {
    /// The names, borrowed from this copy.
    #[must_use]
    pub fn names(&self) -> Names<'_> {
        Names {
            service: self.service.as_ref(),
            backend: self.backend.as_ref(),
            client: self.client.as_ref(),
        }
    }
}

/// The namespace part of `namespace/name`.
#[must_use]
pub fn namespace_of(qualified: &str) -> Option<&str> {
    qualified.split_once('/').map(|(ns, _)| ns)
}
