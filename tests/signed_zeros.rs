//! Signed zeros of sums agree with the reference interpreter: an empty sum
//! is +0 (so `1 / sum(empty)` is +inf) in the JIT and the loop IR alike.
//! What remains different, by decision (ARCHITECTURE.md): a non-empty sum
//! of only -0 elements is -0 in the reference and +0 in the engines (which
//! start from the +0 identity, as PyTorch's sums do), and the engines'
//! `max`/`min` do not order -0 < +0 (doing so cost 12–14% in cache on the
//! prox kernels).

use normjit::{Compiler, Tensor};

fn run(src: &str, inputs: &[&[f32]], n: usize) -> (Vec<u32>, Vec<u32>) {
    let k = normjit_ir::parse(src).unwrap();
    let kern = Compiler::new().unwrap().kernel(k.clone());
    let out_len = |t: &normjit_ir::Tensor| if t.dims.is_empty() { 1 } else { n };
    let mut outs: Vec<Vec<f32>> =
        k.tensors.iter().filter(|(_, t)| t.role.is_written()).map(|(_, t)| vec![7.0; out_len(t)]).collect();
    {
        let mut ins = inputs.iter();
        let mut os = outs.iter_mut();
        let tensors: Vec<Tensor> = k
            .tensors
            .iter()
            .map(|(_, t)| {
                if t.role.is_written() {
                    Tensor::output(os.next().unwrap())
                } else {
                    Tensor::input(ins.next().unwrap())
                }
            })
            .collect();
        kern.call_with(&tensors, &[], Some(&[n]), normjit::Threads::CallingThread).unwrap();
    }
    let mut ins = inputs.iter();
    let all: Vec<&[f32]> =
        k.tensors.iter().map(|(_, t)| if t.role.is_written() { &[][..] } else { *ins.next().unwrap() }).collect();
    let r = normjit_interp::run::<f32>(&k, &[n], &[], &all).unwrap();
    let want: Vec<u32> = k
        .tensors
        .iter()
        .filter(|(_, t)| t.role.is_written())
        .flat_map(|(t, _)| r.get(t).unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>())
        .collect();
    (outs.concat().iter().map(|v| v.to_bits()).collect(), want)
}

#[test]
fn an_empty_sum_is_plus_zero() {
    let src = "kernel inv {\n dims N\n in x: f32[N]\n out y: f32[]\n y = 1 / sum(x, N)\n}\n";
    let (got, want) = run(src, &[&[]], 0);
    assert_eq!(got, want);
    assert_eq!(f32::from_bits(got[0]), f32::INFINITY);
}
