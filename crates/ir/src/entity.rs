//! Typed ids into arenas: the storage scheme of the whole IR.
//!
//! Every IR object lives in an [`Arena`] owned by its [`Kernel`](crate::Kernel)
//! and is named by an [`Id`], a `u32` index tagged with the type it points at,
//! so a `TensorId` can never be used where a `ValueId` is meant.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;

/// A typed index into an [`Arena<T>`].
pub struct Id<T> {
    raw: u32,
    _marker: PhantomData<fn() -> T>,
}

impl<T> Id<T> {
    /// The id with raw index `raw`. Only meaningful for the arena that made it.
    pub const fn from_raw(raw: u32) -> Self {
        Id { raw, _marker: PhantomData }
    }
    /// The raw index.
    pub const fn index(self) -> usize {
        self.raw as usize
    }
}

// Manual impls: derives would demand `T: Clone` etc. for a phantom parameter.
impl<T> Clone for Id<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Id<T> {}
impl<T> PartialEq for Id<T> {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}
impl<T> Eq for Id<T> {}
impl<T> PartialOrd for Id<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Id<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.raw.cmp(&other.raw)
    }
}
impl<T> Hash for Id<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.raw.hash(state)
    }
}
impl<T> fmt::Debug for Id<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.raw)
    }
}

/// Append-only storage for IR objects; ids are handed out in insertion order,
/// which is what makes "operands before users" a simple index comparison.
#[derive(Clone, PartialEq)]
pub struct Arena<T> {
    items: Vec<T>,
}

impl<T> Default for Arena<T> {
    fn default() -> Self {
        Arena { items: Vec::new() }
    }
}

impl<T> Arena<T> {
    /// An empty arena.
    pub fn new() -> Self {
        Self::default()
    }
    /// Stores `item` and returns its id.
    pub fn push(&mut self, item: T) -> Id<T> {
        let raw = u32::try_from(self.items.len()).expect("arena holds more than u32::MAX items");
        self.items.push(item);
        Id::from_raw(raw)
    }
    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }
    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    /// The item for `id`, or `None` if `id` is not from this arena.
    pub fn get(&self, id: Id<T>) -> Option<&T> {
        self.items.get(id.index())
    }
    /// The item for `id`, mutably (ids stay valid: nothing is removed).
    pub fn get_mut(&mut self, id: Id<T>) -> Option<&mut T> {
        self.items.get_mut(id.index())
    }
    /// Ids and items in insertion order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (Id<T>, &T)> + ExactSizeIterator {
        self.items.iter().enumerate().map(|(i, t)| (Id::from_raw(i as u32), t))
    }
    /// All ids in insertion order.
    pub fn ids(&self) -> impl DoubleEndedIterator<Item = Id<T>> + ExactSizeIterator {
        (0..self.items.len() as u32).map(Id::from_raw)
    }
}

impl<T> std::ops::Index<Id<T>> for Arena<T> {
    type Output = T;
    fn index(&self, id: Id<T>) -> &T {
        &self.items[id.index()]
    }
}

impl<T: fmt::Debug> fmt::Debug for Arena<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}
