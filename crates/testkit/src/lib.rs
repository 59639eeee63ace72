//! Random kernels and the interval oracle (work in progress).
