//! Worker-local dependencies: values given to the worker, reached by type, never serialized.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

/// A map from type to one shared value of that type.
#[derive(Clone, Default)]
pub struct Deps {
    map: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for Deps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Deps({} values)", self.map.len())
    }
}

impl Deps {
    /// Add (or replace) the value of type `T`.
    pub fn insert<T: Send + Sync + 'static>(&mut self, value: impl Into<Arc<T>>) {
        self.map.insert(TypeId::of::<T>(), value.into());
    }

    /// The value of type `T`, if given.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.map
            .get(&TypeId::of::<T>())
            .cloned()
            .and_then(|a| a.downcast::<T>().ok())
    }
}
