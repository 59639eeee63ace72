/*
 * layer_norm_adamw.c: the normjit C API end to end.
 *
 * Creates a compiler, loads the library pipelines norm/layer_norm and
 * optim/adamw from the library root given as argv[1] (the repository's
 * ir/ directory), prints their signatures, and runs LayerNorm (N=3, D=5)
 * and one AdamW step (P=7), each once by position and once by name, on
 * deterministic data.
 *
 * Build (from the repository root, after `cargo build -p normjit-capi`):
 *   cc -std=c11 -Iinclude examples/c/layer_norm_adamw.c \
 *      target/debug/libnormjit_capi.a -lpthread -ldl -lm -o layer_norm_adamw
 *   ./layer_norm_adamw ir
 *
 * Output (parsed by crates/capi/tests/c_example.rs): lines starting with
 * '#' are comments; every other line belongs to a run RUN, one of
 * layer_norm.position, layer_norm.named, adamw.position, adamw.named:
 *   dims RUN NAME=SIZE ...          the sizes of the run
 *   param RUN NAME VALUE            every param's value (%.17g), in order
 *   in RUN TENSOR COUNT             then COUNT lines of values (%.9g): the
 *                                   entry value of an in/inout tensor
 *   out RUN TENSOR COUNT            then COUNT lines: the value after the
 *                                   run of an out/inout tensor
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "normjit.h"

/* Exits with the error's message unless `status` is NJ_OK. */
static void check(int32_t status, nj_error *err, const char *what) {
    if (status == NJ_OK) {
        return;
    }
    fprintf(stderr, "%s failed: %s (%d)\n%s\n", what, nj_status_name(status), (int)status,
            nj_error_message(err));
    nj_error_free(err);
    exit(1);
}

/* Runs CALL, which passes &err, and exits on failure. */
#define TRY(call)                           \
    do {                                    \
        nj_error *err = NULL;               \
        check((call), err, #call);          \
    } while (0)

#define MAX_PARAMS 16

/* Prints the signature of `k` as comment lines. */
static void print_signature(const nj_kernel *k) {
    const char *name;
    size_t n_tensors, n_params, n_dims;
    TRY(nj_kernel_name(k, &name, &err));
    TRY(nj_kernel_num_tensors(k, &n_tensors, &err));
    TRY(nj_kernel_num_params(k, &n_params, &err));
    TRY(nj_kernel_num_dims(k, &n_dims, &err));
    printf("# kernel %s: %zu tensors, %zu params, %zu dims\n", name, n_tensors, n_params, n_dims);
    static const char *roles[] = {"in", "out", "inout"};
    for (size_t i = 0; i < n_tensors; i++) {
        nj_tensor_info t;
        TRY(nj_kernel_tensor_info(k, i, &t, &err));
        printf("#   tensor %zu: %s %s %s[", i, roles[t.role], t.name,
               t.dtype == NJ_DTYPE_F32 ? "f32" : "?");
        for (int32_t d = 0; d < t.rank; d++) {
            const char *dim;
            TRY(nj_kernel_dim_name(k, t.dims[d], &dim, &err));
            printf("%s%s", d ? ", " : "", dim);
        }
        printf("]\n");
    }
    for (size_t i = 0; i < n_params; i++) {
        nj_param_info p;
        TRY(nj_kernel_param_info(k, i, &p, &err));
        printf("#   param %zu: %s: %s", i, p.name, p.param_type == NJ_PARAM_F32 ? "f32" : "u32");
        if (p.has_default) {
            printf(" = %.9g\n", p.default_value);
        } else {
            printf(" (no default)\n");
        }
    }
}

/* Every param's value: its default, or `fallback` for one without. */
static size_t param_values(const nj_kernel *k, double fallback, double *values) {
    size_t n;
    TRY(nj_kernel_num_params(k, &n, &err));
    if (n > MAX_PARAMS) {
        fprintf(stderr, "too many params\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) {
        nj_param_info p;
        TRY(nj_kernel_param_info(k, i, &p, &err));
        values[i] = p.has_default ? p.default_value : fallback;
    }
    return n;
}

static void print_params(const nj_kernel *k, const char *run, const double *values) {
    size_t n;
    TRY(nj_kernel_num_params(k, &n, &err));
    for (size_t i = 0; i < n; i++) {
        nj_param_info p;
        TRY(nj_kernel_param_info(k, i, &p, &err));
        printf("param %s %s %.17g\n", run, p.name, values[i]);
    }
}

static void print_tensor(const char *which, const char *run, const char *name, const float *v,
                         size_t n) {
    printf("%s %s %s %zu\n", which, run, name, n);
    for (size_t i = 0; i < n; i++) {
        printf("%.9g\n", v[i]);
    }
}

/* ---- LayerNorm: y = (x - mean) / sqrt(var + eps) * gamma + beta, per row ---- */

enum { N = 3, D = 5, P = 7 };

static void layer_norm(const nj_kernel *k) {
    float x[N * D], gamma[D], beta[D], y[N * D], y_named[N * D];
    for (int i = 0; i < N * D; i++) {
        x[i] = (float)((i * i * 7 + 3 * i) % 19 - 9) / 4.0f;
    }
    for (int j = 0; j < D; j++) {
        gamma[j] = 1.0f + 0.125f * (float)j;
        beta[j] = 0.0625f * (float)j - 0.25f;
    }
    const int64_t shape_nd[2] = {N, D};
    const int64_t shape_d[1] = {D};

    /* By position: tensors in signature order (x, gamma, beta, y), every
       param (just eps) at its default. */
    double params[MAX_PARAMS];
    size_t n_params = param_values(k, 0.0, params);
    nj_tensor tensors[4] = {
        {x, NJ_DTYPE_F32, 2, shape_nd},
        {gamma, NJ_DTYPE_F32, 1, shape_d},
        {beta, NJ_DTYPE_F32, 1, shape_d},
        {y, NJ_DTYPE_F32, 2, shape_nd},
    };
    const char *run = "layer_norm.position";
    printf("dims %s N=%d D=%d\n", run, N, D);
    print_params(k, run, params);
    print_tensor("in", run, "x", x, N * D);
    print_tensor("in", run, "gamma", gamma, D);
    print_tensor("in", run, "beta", beta, D);
    TRY(nj_kernel_run(k, tensors, 4, params, n_params, NJ_THREADS_DEFAULT, &err));
    print_tensor("out", run, "y", y, N * D);

    /* By name, in another order; eps omitted (its default applies). */
    const char *names[4] = {"y", "beta", "x", "gamma"};
    nj_tensor named[4] = {
        {y_named, NJ_DTYPE_F32, 2, shape_nd},
        {beta, NJ_DTYPE_F32, 1, shape_d},
        {x, NJ_DTYPE_F32, 2, shape_nd},
        {gamma, NJ_DTYPE_F32, 1, shape_d},
    };
    run = "layer_norm.named";
    printf("dims %s N=%d D=%d\n", run, N, D);
    print_params(k, run, params);
    print_tensor("in", run, "x", x, N * D);
    print_tensor("in", run, "gamma", gamma, D);
    print_tensor("in", run, "beta", beta, D);
    TRY(nj_kernel_run_named(k, names, named, 4, NULL, NULL, 0, NJ_THREADS_CALLING, &err));
    print_tensor("out", run, "y", y_named, N * D);

    /* A mistake is reported, naming what is wrong, and nothing is written. */
    const int64_t shape_bad[1] = {D - 1};
    tensors[1].shape = shape_bad;
    nj_error *err = NULL;
    int32_t status = nj_kernel_run(k, tensors, 4, params, n_params, NJ_THREADS_DEFAULT, &err);
    printf("# a gamma of shape [%d] is refused: %s: %s\n", D - 1, nj_status_name(status),
           nj_error_message(err));
    nj_error_free(err);
}

/* ---- AdamW: one step, p, m, v updated in place ---- */

static void adamw(const nj_kernel *k) {
    float p0[P], m0[P], v0[P], g[P];
    for (int i = 0; i < P; i++) {
        p0[i] = 0.5f - 0.125f * (float)i;
        m0[i] = 0.01f * (float)(i - 3);
        v0[i] = 0.001f * (float)(i + 1);
        g[i] = 0.25f * (float)((i * 5) % 7 - 3);
    }
    const int64_t shape[1] = {P};
    const double step = 3.0; /* t, the only param without a default */
    const char *runs[2] = {"adamw.position", "adamw.named"};
    for (int r = 0; r < 2; r++) {
        float p[P], m[P], v[P];
        memcpy(p, p0, sizeof p);
        memcpy(m, m0, sizeof m);
        memcpy(v, v0, sizeof v);
        double params[MAX_PARAMS];
        param_values(k, step, params);
        printf("dims %s P=%d\n", runs[r], P);
        print_params(k, runs[r], params);
        print_tensor("in", runs[r], "p", p, P);
        print_tensor("in", runs[r], "m", m, P);
        print_tensor("in", runs[r], "v", v, P);
        print_tensor("in", runs[r], "g", g, P);
        if (r == 0) {
            /* By position: p, m, v, g; lr, beta1, beta2, eps, wd, t. */
            size_t n_params;
            TRY(nj_kernel_num_params(k, &n_params, &err));
            nj_tensor tensors[4] = {
                {p, NJ_DTYPE_F32, 1, shape},
                {m, NJ_DTYPE_F32, 1, shape},
                {v, NJ_DTYPE_F32, 1, shape},
                {g, NJ_DTYPE_F32, 1, shape},
            };
            TRY(nj_kernel_run(k, tensors, 4, params, n_params, NJ_THREADS_DEFAULT, &err));
        } else {
            /* By name: only t is given; the rest take their defaults. */
            const char *names[4] = {"g", "p", "m", "v"};
            nj_tensor tensors[4] = {
                {g, NJ_DTYPE_F32, 1, shape},
                {p, NJ_DTYPE_F32, 1, shape},
                {m, NJ_DTYPE_F32, 1, shape},
                {v, NJ_DTYPE_F32, 1, shape},
            };
            const char *param_names[1] = {"t"};
            TRY(nj_kernel_run_named(k, names, tensors, 4, param_names, &step, 1, NJ_THREADS_DEFAULT,
                                    &err));
        }
        print_tensor("out", runs[r], "p", p, P);
        print_tensor("out", runs[r], "m", m, P);
        print_tensor("out", runs[r], "v", v, P);
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s LIBRARY_ROOT (the repository's ir/ directory)\n", argv[0]);
        return 2;
    }
    printf("# normjit %s\n", nj_version());

    nj_compiler_options options;
    TRY(nj_compiler_options_default(&options, &err));
    options.threads = 2;
    nj_compiler *compiler = NULL;
    TRY(nj_compiler_new(&options, &compiler, &err));

    nj_kernel *ln = NULL, *aw = NULL;
    TRY(nj_kernel_load_library(compiler, argv[1], "norm/layer_norm", &ln, &err));
    TRY(nj_kernel_load_library(compiler, argv[1], "optim/adamw", &aw, &err));
    /* Kernels keep what they need of the compiler. */
    TRY(nj_compiler_free(compiler, &err));

    print_signature(ln);
    print_signature(aw);
    layer_norm(ln);
    adamw(aw);

    TRY(nj_kernel_free(ln, &err));
    TRY(nj_kernel_free(aw, &err));
    return 0;
}
