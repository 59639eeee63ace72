//! How names from PyTorch and NumPy are spelled in normjit, for the hints
//! attached to "unknown function" and `torch.`-prefix errors.
//!
//! Only spellings with an exact normjit equivalent (or a pointer to the
//! library file that spells the thing out) are listed; a wrong hint is
//! worse than none.

/// Every function of the text format, as listed in messages.
pub const ALL_FNS: &str =
    "sqrt rsqrt abs sign exp log neg recip tanh sigmoid erf pow min max select sum mean var std count uniform";

/// True for a function name the text format knows.
pub fn is_function(name: &str) -> bool {
    ALL_FNS.split(' ').any(|f| f == name)
}

/// How normjit writes the PyTorch/NumPy function `name`, if it differs.
pub fn spelling(name: &str) -> Option<&'static str> {
    Some(match name {
        "square" => "normjit writes `square(x)` as `x * x` (or `x ^ 2`)",
        "clamp" | "clip" => "normjit writes `clamp(x, lo, hi)` as `min(max(x, lo), hi)`",
        "clamp_min" => "normjit writes `clamp_min(x, lo)` as `max(x, lo)`",
        "clamp_max" => "normjit writes `clamp_max(x, hi)` as `min(x, hi)`",
        "where" => {
            "normjit writes `where(cond, a, b)` as `select(cond, a, b)`, with a comparison such as `x > 0` as `cond`"
        }
        "maximum" => {
            "normjit writes `maximum(a, b)` as `max(a, b)` (elementwise, NaN-propagating like `torch.maximum`)"
        }
        "minimum" => {
            "normjit writes `minimum(a, b)` as `min(a, b)` (elementwise, NaN-propagating like `torch.minimum`)"
        }
        "fmax" => "the closest is `max(a, b)`, which propagates NaN where `fmax` ignores it",
        "fmin" => "the closest is `min(a, b)`, which propagates NaN where `fmin` ignores it",
        "amax" => {
            "normjit writes `amax(x, dim)` as `max(x, D)`, a reduction when every argument after the first is a dim"
        }
        "amin" => {
            "normjit writes `amin(x, dim)` as `min(x, D)`, a reduction when every argument after the first is a dim"
        }
        "reciprocal" => "normjit writes `reciprocal(x)` as `recip(x)`",
        "absolute" => "normjit writes `absolute(x)` as `abs(x)`",
        "negative" => "normjit writes `negative(x)` as `-x` (or `neg(x)`)",
        "sgn" | "signum" => "normjit writes it as `sign(x)`",
        "power" | "float_power" => "normjit writes powers as `x ^ y` (or `pow(x, y)`)",
        "exp2" => "normjit writes `exp2(x)` as `2 ^ x`",
        "log2" => "normjit writes `log2(x)` as `log(x) / log(2)`",
        "log10" => "normjit writes `log10(x)` as `log(x) / log(10)`",
        "average" => "normjit writes it as `mean(x, AXES)`",
        "relu" => "normjit writes `relu(x)` as `max(x, 0)`",
        "silu" | "swish" => "normjit writes `silu(x)` as `x * sigmoid(x)`",
        "gelu" => "normjit writes `gelu(x)` as `0.5 * x * (1 + erf(x * 0.7071067811865476))` (or the tanh form)",
        "logistic" | "expit" => "normjit writes it as `sigmoid(x)`",
        "softmax" => "normjit spells softmax out: `e = exp(x - max(x, D))`, then `e / sum(e, D)`",
        "log_softmax" => "normjit spells log-softmax out: `z = x - max(x, D)`, then `z - log(sum(exp(z), D))`",
        "layer_norm" => "normjit spells LayerNorm out; see ir/norm/layer_norm.nj",
        "rms_norm" => "normjit spells RMSNorm out; see ir/norm/rms_norm.nj",
        "batch_norm" => "normjit spells BatchNorm out; see ir/norm/batch_norm_train.nj and batch_norm_infer.nj",
        "group_norm" => "normjit spells GroupNorm out; see ir/norm/group_norm.nj",
        "instance_norm" => "normjit spells InstanceNorm out; see ir/norm/instance_norm.nj",
        "rand" | "rand_like" | "uniform_" => {
            "normjit draws uniform numbers in [0, 1) with `uniform(seed, AXES)`, `seed` a `u32` param"
        }
        "dropout" => "normjit writes dropout as `select(uniform(seed, N) >= p, x / (1 - p), 0)`; see ir/reg/dropout.nj",
        "bernoulli" => "normjit writes a Bernoulli(p) draw as `select(uniform(seed, N) < p, 1, 0)`",
        "randn" | "randn_like" | "normal" => {
            "normjit has no normal sampler; `uniform(seed, AXES)` draws uniform numbers in [0, 1)"
        }
        "dot" | "matmul" | "mm" | "bmm" | "einsum" | "tensordot" | "inner" | "mv" => {
            "normjit multiplies and reduces by axis name: `sum(a * b, K)` contracts over `K`"
        }
        "norm" | "vector_norm" => "normjit writes the L2 norm as `sqrt(sum(x * x, AXES))`",
        "lerp" => "normjit writes `lerp(a, b, w)` as `a + w * (b - a)`",
        "addcmul" => "normjit writes `addcmul(a, b, c, value=v)` as `a + v * b * c`",
        "addcdiv" => "normjit writes `addcdiv(a, b, c, value=v)` as `a + v * b / c`",
        "numel" | "size" | "len" => "normjit writes the number of elements in dims as `count(D, ...)`",
        "zeros" | "ones" | "full" | "zeros_like" | "ones_like" | "full_like" => {
            "write the number itself: a literal broadcasts to any axes (e.g. `0`)"
        }
        "variance" => "normjit writes the biased variance as `var(x, AXES)`",
        _ => return None,
    })
}

/// Prefixes that name a Python module rather than a value (`torch.rsqrt`).
pub fn is_module(name: &str) -> bool {
    matches!(
        name,
        "torch"
            | "F"
            | "nn"
            | "functional"
            | "np"
            | "numpy"
            | "math"
            | "jnp"
            | "jax"
            | "lax"
            | "tf"
            | "special"
            | "linalg"
    )
}
