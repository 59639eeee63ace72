//! Pass `order`: the reference loop order.
//!
//! Establishes: the memory order of the kernel's largest tensor (by
//! planned element count, then rank, then declaration), with dims it lacks
//! placed outside it in declaration order. Looping in this order walks the
//! dominant stream contiguously.

use normjit_ir::{DimId, Kernel};

pub fn reference_order(k: &Kernel, dims: &[usize]) -> Vec<DimId> {
    let size = |t: &normjit_ir::Tensor| t.dims.iter().map(|d| dims[d.index()] as u128).product::<u128>();
    let largest = k
        .tensors
        .iter()
        .map(|(_, t)| t)
        .enumerate()
        .max_by(|(i, a), (j, b)| size(a).cmp(&size(b)).then(a.dims.len().cmp(&b.dims.len())).then(j.cmp(i)))
        .map(|(_, t)| t.dims.clone())
        .unwrap_or_default();
    let mut order: Vec<DimId> = k.dims.ids().filter(|d| !largest.contains(d)).collect();
    order.extend(largest);
    order
}
