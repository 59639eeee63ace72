//! C ABI of the normjit runtime (work in progress).
