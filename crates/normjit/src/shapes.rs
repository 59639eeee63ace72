//! What a kernel keeps per shape: the code that runs it, the scratch
//! layout and thread chunks at those sizes — in a bounded LRU, so memory
//! stays flat over an unbounded stream of shapes.

use normjit_codegen::{Compiled, Layout};
use normjit_lower::Plan;
use std::collections::HashMap;
use std::sync::Arc;

/// A kernel at one set of sizes.
pub(crate) struct Shape {
    pub code: Arc<Compiled>,
    /// Sizes by dim index, as the frame passes them.
    pub dims: Box<[i64]>,
    pub layout: Layout,
    /// Elements of work per call: the loop domains of all passes, added
    /// (a three-pass norm does three times the work of one pass).
    pub work: u64,
    /// Columns per block, with column blocking (`normjit_lower::Block`):
    /// the size the plan made at these sizes chose, which may differ from
    /// that of the plan the code was compiled from.
    pub block: Option<usize>,
}

impl Shape {
    /// The shape `dims` of `code`; `block` as the plan made at `dims` has
    /// it (`None`: the code's).
    pub fn new(code: Arc<Compiled>, dims: &[usize], block: Option<usize>) -> Shape {
        let plan: &Plan = code.plan();
        let block = plan.block.as_ref().map(|b| block.unwrap_or(b.size).max(1));
        let layout = Layout::new(plan, dims);
        let extent = |ds: &mut dyn Iterator<Item = normjit_ir::DimId>| -> u64 {
            ds.map(|d| dims[d.index()] as u64).fold(1u64, |a, b| a.saturating_mul(b))
        };
        let group: u64 = extent(&mut plan.group().iter().copied());
        let work = plan
            .phases
            .iter()
            .map(|ph| group.saturating_mul(extent(&mut ph.loops.iter().copied())))
            .fold(group, u64::saturating_add);
        Shape { dims: dims.iter().map(|&d| d as i64).collect(), layout, work, code, block }
    }

    /// The sizes, by dim index.
    pub fn sizes(&self) -> impl Iterator<Item = usize> + '_ {
        self.dims.iter().map(|&d| d as usize)
    }
}

/// A least-recently-used map from sizes to values, holding at most `cap`.
pub(crate) struct Lru<V> {
    map: HashMap<Box<[usize]>, (V, u64)>,
    tick: u64,
    cap: usize,
}

impl<V: Clone> Lru<V> {
    pub fn new(cap: usize) -> Self {
        Lru { map: HashMap::new(), tick: 0, cap: cap.max(1) }
    }

    /// The value for `key`, marked as used now. Allocates nothing.
    pub fn get(&mut self, key: &[usize]) -> Option<V> {
        self.tick += 1;
        let t = self.tick;
        self.map.get_mut(key).map(|e| {
            e.1 = t;
            e.0.clone()
        })
    }

    /// Inserts `v`, evicting the least recently used entry when full.
    pub fn insert(&mut self, key: &[usize], v: V) {
        if !self.map.contains_key(key) && self.map.len() >= self.cap {
            if let Some(old) = self.map.iter().min_by_key(|e| e.1 .1).map(|e| e.0.clone()) {
                self.map.remove(&old);
            }
        }
        self.tick += 1;
        self.map.insert(key.into(), (v, self.tick));
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }
}
