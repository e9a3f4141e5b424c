/*
 * harness.h — what the conformance scenarios share: failure recording, the loaded library, test models (layer sets
 * with random weights), sequences of random tokens, and a step runner that packs a batch, runs every layer on it
 * and collects the outputs per sequence. Everything goes through the function table of abi/linattn.h.
 */
#ifndef LINATTN_CONFORMANCE_HARNESS_H
#define LINATTN_CONFORMANCE_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#include "abi/linattn.h"
#include "integration/common/naive.h"

#define MAX_LAYERS 4
#define MAX_SEQS 16
#define MAX_STEP_ENTRIES (MAX_SEQS + 2)
#define MAX_STEP_CHECKPOINTS 8
/* Relative error ‖x − ref‖ / ‖ref‖ allowed against the naive reference, and between runs off the CPU backend. */
#define REL_TOLERANCE 5e-3

/* ---- failure recording: the first failure of a scenario is kept with its line, notes collect measurements ---- */

typedef struct check_log {
    int failed;
    char failure[512];
    char notes[512];
} check_log;

/* Nonzero: every failed check is also printed to stderr (set once, before scenarios start). */
extern int harness_verbose;

void check_fail(check_log *log, int line, const char *format, ...);
void check_note(check_log *log, const char *format, ...);

#define CHECK(log, condition, ...) ((condition) ? 1 : (check_fail((log), __LINE__, __VA_ARGS__), 0))
/* A library call that must succeed; a failure records the call, its status and the library's message. */
#define CHECK_OK(log, api, call) check_ok((log), (api), (call), #call, __LINE__)
int check_ok(check_log *log, const linattn_api *api, linattn_status status, const char *call, int line);

/* ---- the library under test ---- */

typedef struct harness {
    linattn_get_api_fn get_api;
    const linattn_api *api;
    linattn_backend_kind requested; /* what contexts are created with */
    linattn_backend_kind backend;   /* what a context of that request reports (CPU or CUDA) */
} harness;

/* ---- test models ---- */

typedef struct test_layer {
    const char *name;
    linattn_layer_desc desc;
    float *weights; /* backs desc.conv_weight, conv_bias, A_log and dt_bias */
    int pass_a;     /* forward passes the decay input a (simple GLA without it decays at a constant rate) */
    int64_t channels;
    linattn_layer *handle;
    linattn_layer_info info;
} test_layer;

typedef enum model_kind {
    MODEL_HYBRID, /* a Qwen3-Next GDN layer, two simple GLA layers (a = NULL / a given), a small GDN layer */
    MODEL_TINY    /* a small GDN and a small GLA layer, for API checks */
} model_kind;

/* One sequence: its tokens for every layer (rows at absolute positions 0..length−1) and the outputs steps gave. */
typedef struct test_seq {
    int64_t length;
    uint16_t *qkv[MAX_LAYERS], *a[MAX_LAYERS], *b[MAX_LAYERS];
    uint16_t *out[MAX_LAYERS]; /* [length][Hv·dv]; 0xFFFF where no step has written yet */
    int32_t slot;
} test_seq;

typedef struct fixture {
    const harness *h;
    const linattn_api *api;
    linattn_context *context;
    linattn_capabilities caps;
    linattn_stream_t stream;
    int exact; /* CPU backend: runs that must agree agree bitwise */
    int num_layers;
    test_layer layers[MAX_LAYERS];
    linattn_pool *pool;
    int32_t capacity;
    linattn_plan *plan;
    int num_seqs;
    test_seq seqs[MAX_SEQS];
} fixture;

/* Context, layers of `model` (weights from `seed`), a pool of `capacity` slots over all of them, and a plan. */
int fixture_create(fixture *f, const harness *h, model_kind model, uint64_t seed, int32_t capacity, check_log *log);
void fixture_destroy(fixture *f);
/* Random weights for one layer of a model and its creation in f's context (used for layers outside the pool). */
int fixture_make_layer(fixture *f, test_layer *layer, model_kind model, int index, uint64_t seed, check_log *log);
void test_layer_release(test_layer *layer);

/* A sequence of `length` random tokens (the same seed gives the same tokens) with a freshly allocated slot.
 * Returns its index, or -1. */
int fixture_add_seq(fixture *f, int64_t length, uint64_t seed, check_log *log);
int32_t fixture_alloc_slot(fixture *f, check_log *log);

/* One layer's state of a slot as slot_read gives it; malloc'ed, info.state_bytes long, NULL on failure. */
uint8_t *fixture_read_state(fixture *f, int layer, int32_t slot, check_log *log);

/* ---- steps ---- */

typedef struct step_entry {
    int seq;              /* index into f->seqs, or -1 for a padding sequence (LINATTN_SLOT_NONE) */
    int64_t start;        /* start_position: absolute position of the first token */
    int32_t count;        /* num_tokens */
    int32_t slot;         /* state slot; ignored for padding */
    linattn_init init;
    int32_t source_slot;  /* for LINATTN_INIT_FROM_SLOT */
} step_entry;

typedef struct step_checkpoint {
    int entry;        /* index into the step's entries */
    int64_t position; /* absolute position */
    int32_t slot;
} step_checkpoint;

typedef struct prepared_step {
    int num_entries;
    step_entry entries[MAX_STEP_ENTRIES];
    linattn_seq_desc seqs[MAX_STEP_ENTRIES];
    linattn_checkpoint_desc checkpoints[MAX_STEP_CHECKPOINTS];
    linattn_batch_desc batch;
    int64_t row_pad; /* extra elements after every row of every activation (0: contiguous, row strides 0) */
    int64_t capacity_rows; /* rows the device buffers hold (the rows of the step they were made for) */
    void *qkv[MAX_LAYERS], *a[MAX_LAYERS], *b[MAX_LAYERS], *out[MAX_LAYERS]; /* device buffers */
    linattn_forward_args args[MAX_LAYERS];
    linattn_plan *plan; /* the plan the step is set on and run with: f->plan unless the caller changes it */
} prepared_step;

/* Pack the entries' tokens into one stream per layer and upload it; builds the batch and forward arguments. */
int step_prepare(fixture *f, prepared_step *step, const step_entry *entries, int num_entries,
                 const step_checkpoint *checkpoints, int num_checkpoints, int64_t row_pad, check_log *log);
/* Make a prepared step another one (no checkpoints, at most capacity_rows rows): its batch is rebuilt and its
 * inputs are uploaded into the same device buffers, so forward arguments (and a graph that captured them) stay. */
int step_refill(fixture *f, prepared_step *step, const step_entry *entries, int num_entries, check_log *log);
int step_set_batch(fixture *f, prepared_step *step, check_log *log);
/* Poison every output, run every layer, check that exactly the rows of real sequences were written (nothing else:
 * not padding rows, row gaps or rows past the batch), and copy them into the sequences' out arrays. */
int step_forward(fixture *f, prepared_step *step, check_log *log);
/* step_forward with the layers run by `run` (e.g. a graph launch) instead of a forward call per layer. */
typedef int (*step_runner)(fixture *f, prepared_step *step, void *context, check_log *log);
int step_forward_by(fixture *f, prepared_step *step, step_runner run, void *context, check_log *log);
void step_release(prepared_step *step);
/* prepare + set_batch + forward + release. */
int run_step(fixture *f, const step_entry *entries, int num_entries, const step_checkpoint *checkpoints,
             int num_checkpoints, int64_t row_pad, check_log *log);

/* ---- comparisons ---- */

/* The naive reference over tokens [from, from + tokens) of a sequence, starting from `initial` (NULL: zero), with
 * the inputs the step runner gives the library (no a for a layer with constant decay). */
int naive_for_seq(const test_layer *layer, int l, const test_seq *seq, int64_t from, int64_t tokens,
                  const naive_state *initial, float *out, naive_state *final);

size_t output_row_elements(const test_layer *layer);
/* ‖out − ref‖ / ‖ref‖ with out as bf16 bits. */
double rel_err_vs_float(const uint16_t *out, const float *ref, size_t n);
double rel_err_bf16(const uint16_t *x, const uint16_t *ref, size_t n);
double max_abs_diff_bf16(const uint16_t *x, const uint16_t *y, size_t n);

/* The state bytes of a layer against the naive state: relative error of the recurrent part; *conv_equal says
 * whether the conv history is exactly the naive one (it is a copy of bf16 inputs, so no rounding is allowed). */
double state_rel_err_vs_naive(const test_layer *layer, const uint8_t *bytes, const naive_state *ref,
                              int *conv_equal);

/* Two library results that must agree: bitwise when f->exact, else within REL_TOLERANCE (a failure is recorded
 * under `what`). *measure receives the max abs difference (exact) or the relative error. Returns 1 when they agree. */
int agree_outputs(const fixture *f, check_log *log, const char *what, const uint16_t *x, const uint16_t *y, size_t n,
                  double *measure);
int agree_states(const fixture *f, check_log *log, const char *what, int layer, const uint8_t *x, const uint8_t *y,
                 double *measure);

double seconds_now(void);

#endif
