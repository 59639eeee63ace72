use normjit::{Compiler, CompilerOptions};
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let src = std::fs::read_to_string(&args[1]).unwrap();
    let dims: Vec<usize> = args[2].split(',').map(|s| s.parse().unwrap()).collect();
    let n: usize = args[3].parse().unwrap();
    let c0 = Compiler::with_options(CompilerOptions { threads: 1, ..Default::default() }).unwrap();
    let k = c0.compile_source(&src).unwrap();
    let mut v = vec![];
    for _ in 0..n {
        let c = Compiler::with_options(CompilerOptions { threads: 1, ..Default::default() }).unwrap();
        let (_, us) = c.kernel(k.ir().clone()).prepare(&dims).unwrap();
        v.push(us);
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("median {:?}", v[v.len() / 2]);
}
