//! Named-axis broadcasting with arbitrary tensor layouts, against a naive
//! per-element reference that indexes every tensor by dim name.

use normjit_interp::run;
use normjit_ir::{DType, DimId, KernelBuilder, Role};
use proptest::prelude::*;

/// Offset of the element at full index `at` (by dim index) in a row-major
/// tensor whose dims, outermost first, are `order`.
fn offset(order: &[usize], sizes: &[usize], at: &[usize]) -> usize {
    order.iter().fold(0, |off, &d| off * sizes[d] + at[d])
}

/// The dims of `perm` (a permutation of 0..3) that are in `mask`, in that order.
fn layout(perm: &[usize], mask: u8) -> Vec<usize> {
    perm.iter().copied().filter(|&d| mask & (1 << d) != 0).collect()
}

fn data(n: usize, salt: f32) -> Vec<f32> {
    (0..n).map(|i| (i as f32 + 1.0) * salt).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn elementwise_ops_and_stores_broadcast_by_name(
        sizes in proptest::array::uniform3(0usize..4),
        (xm, ym, extra) in (0u8..8, 0u8..8, 0u8..8),
        xp in Just(vec![0usize, 1, 2]).prop_shuffle(),
        yp in Just(vec![0usize, 1, 2]).prop_shuffle(),
        zp in Just(vec![0usize, 1, 2]).prop_shuffle(),
        wp in Just(vec![0usize, 1, 2]).prop_shuffle(),
    ) {
        let (xl, yl) = (layout(&xp, xm), layout(&yp, ym));
        let (zl, wl) = (layout(&zp, xm | ym), layout(&wp, xm | ym | extra));
        let mut b = KernelBuilder::new("bc");
        let dims: Vec<DimId> = ["A", "B", "C"].iter().map(|n| b.dim(n)).collect();
        let ids = |l: &[usize]| l.iter().map(|&d| dims[d]).collect::<Vec<_>>();
        let x = b.tensor("x", Role::In, DType::F32, &ids(&xl));
        let y = b.tensor("y", Role::In, DType::F32, &ids(&yl));
        let z = b.tensor("z", Role::Out, DType::F32, &ids(&zl));
        let w = b.tensor("w", Role::Out, DType::F32, &ids(&wl));
        let (xv, yv) = (b.load(x), b.load(y));
        let p = b.mul(xv, yv);
        let zv = b.sub(p, xv);
        b.store(z, zv);
        let wv = b.sub(yv, xv);
        b.store(w, wv);
        let k = b.finish().unwrap();

        let count = |l: &[usize]| l.iter().map(|&d| sizes[d]).product::<usize>();
        let (xd, yd) = (data(count(&xl), 0.5), data(count(&yl), -0.25));
        let out = run::<f32>(&k, &sizes, &[], &[&xd, &yd, &[], &[]]).unwrap();
        let (zo, wo) = (out.get(z).unwrap(), out.get(w).unwrap());
        prop_assert_eq!(zo.len(), count(&zl));
        prop_assert_eq!(wo.len(), count(&wl));
        for a in 0..sizes[0] {
            for bi in 0..sizes[1] {
                for c in 0..sizes[2] {
                    let at = [a, bi, c];
                    let (xe, ye) = (xd[offset(&xl, &sizes, &at)], yd[offset(&yl, &sizes, &at)]);
                    prop_assert_eq!(zo[offset(&zl, &sizes, &at)], xe * ye - xe);
                    prop_assert_eq!(wo[offset(&wl, &sizes, &at)], ye - xe);
                }
            }
        }
    }
}
