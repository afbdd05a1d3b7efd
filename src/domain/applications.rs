//! The fund's applications: an ordered map with copy-on-write sharing.
//!
//! Applications are most of a fund's state (2.5 million of them, with their
//! grants, in a ledger of 10 million events). The ledger keeps two views of
//! the state: the writer's, which runs ahead during a group commit, and the
//! published one that queries read. With a plain `BTreeMap` they were two
//! whole copies. Here a clone is O(1): both views share every application
//! that neither has changed since, and a change copies one application and
//! the map's path to it ([`PersistentMap`], a B+ tree of reference-counted
//! nodes, built in one pass from a checkpoint's applications in id order).
//!
//! It behaves as a `BTreeMap<ApplicationId, Application>`: the same order,
//! equality, `Debug`, and serde form (a map in key order), so checkpoints and
//! the canonical state bytes are unchanged.

use super::ids::ApplicationId;
use super::state::Application;
use crate::persistent_map::PersistentMap;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::ops::{Index, RangeBounds};
use std::sync::Arc;

#[derive(Clone, Default, PartialEq, Eq)]
pub struct Applications(PersistentMap<ApplicationId, Arc<Application>>);

impl Applications {
    pub fn new() -> Applications {
        Applications::default()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains_key(&self, id: &ApplicationId) -> bool {
        self.0.contains_key(id)
    }

    pub fn get(&self, id: &ApplicationId) -> Option<&Application> {
        self.0.get(id).map(|application| &**application)
    }

    /// The application to change: copied first if another view shares it.
    pub fn get_mut(&mut self, id: &ApplicationId) -> Option<&mut Application> {
        self.0.get_mut(id).map(Arc::make_mut)
    }

    pub fn insert(&mut self, id: ApplicationId, application: Application) -> Option<Application> {
        self.0.insert(id, Arc::new(application)).map(Arc::unwrap_or_clone)
    }

    /// In id order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&ApplicationId, &Application)> + '_ {
        self.0.iter().map(|(id, application)| (id, &**application))
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &ApplicationId> + '_ {
        self.0.iter().map(|(id, _)| id)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &Application> + '_ {
        self.0.iter().map(|(_, application)| &**application)
    }

    pub fn range<R: RangeBounds<ApplicationId>>(
        &self,
        range: R,
    ) -> impl DoubleEndedIterator<Item = (&ApplicationId, &Application)> + '_ {
        self.0.range(range).map(|(id, application)| (id, &**application))
    }
}

impl Index<&ApplicationId> for Applications {
    type Output = Application;

    fn index(&self, id: &ApplicationId) -> &Application {
        self.get(id).expect("no application with this id")
    }
}

impl<'a> IntoIterator for &'a Applications {
    type Item = (&'a ApplicationId, &'a Application);
    type IntoIter = Box<dyn DoubleEndedIterator<Item = (&'a ApplicationId, &'a Application)> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

impl FromIterator<(ApplicationId, Application)> for Applications {
    fn from_iter<I: IntoIterator<Item = (ApplicationId, Application)>>(iter: I) -> Applications {
        Applications(iter.into_iter().map(|(id, application)| (id, Arc::new(application))).collect())
    }
}

/// Applications already shared (a checkpoint's chunks move each one into
/// its `Arc` as it is decoded), added in order: a repeated id keeps the
/// last.
impl Extend<(ApplicationId, Arc<Application>)> for Applications {
    fn extend<I: IntoIterator<Item = (ApplicationId, Arc<Application>)>>(&mut self, iter: I) {
        self.0.extend(iter)
    }
}

impl fmt::Debug for Applications {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Applications {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Applications {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Applications, D::Error> {
        struct MapVisitor;

        impl<'de> Visitor<'de> for MapVisitor {
            type Value = Applications;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of applications by id")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Applications, A::Error> {
                let mut applications = PersistentMap::new();
                while let Some((id, application)) = map.next_entry::<ApplicationId, Application>()? {
                    // As a BTreeMap: a repeated key keeps the last value.
                    applications.insert(id, Arc::new(application));
                }
                Ok(Applications(applications))
            }
        }

        deserializer.deserialize_map(MapVisitor)
    }
}
