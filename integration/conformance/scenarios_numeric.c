/* scenarios_numeric.c — what the layers compute: against the naive reference of MATH.md, and the equivalences
 * MATH.md promises (split prefill, prefill vs decode, checkpoint restore, concurrent contexts). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "integration/common/devmem.h"
#include "integration/conformance/scenarios.h"

static scenario_outcome outcome_of(const check_log *log)
{
    return log->failed ? OUTCOME_FAIL : OUTCOME_PASS;
}

static step_entry fresh(int seq, int32_t slot, int32_t count)
{
    step_entry entry = {seq, 0, count, slot, LINATTN_INIT_ZERO, 0};
    return entry;
}

static step_entry continued(int seq, int32_t slot, int64_t start, int32_t count)
{
    step_entry entry = {seq, start, count, slot, LINATTN_INIT_CONTINUE, 0};
    return entry;
}

static step_entry padding(int32_t count)
{
    step_entry entry = {-1, 0, count, LINATTN_SLOT_NONE, LINATTN_INIT_ZERO, 0};
    return entry;
}

static int forward_calls(fixture *f, uint64_t *calls, check_log *log)
{
    linattn_stats stats = {sizeof stats, 0, 0, 0, 0, 0, 0};
    if (!CHECK_OK(log, f->api, f->api->get_stats(f->context, &stats))) return 0;
    *calls = stats.forward_calls;
    return 1;
}

/*
 * Prefill sequences of the given lengths in one batch (a padding sequence among them), then `decode_steps` steps
 * of one token per sequence (CONTINUE, in reverse order, with padded row strides). Outputs land in f->seqs.
 */
static int prefill_and_decode(fixture *f, const int64_t *lengths, int n, int decode_steps, uint64_t seed,
                              check_log *log)
{
    step_entry entries[MAX_STEP_ENTRIES];
    int seqs[MAX_SEQS], count = 0;
    for (int i = 0; i < n; ++i) {
        int seq = seqs[i] = fixture_add_seq(f, lengths[i] + decode_steps, seed * 100u + (uint64_t)i, log);
        if (seq < 0) return 0;
        entries[count++] = fresh(seq, f->seqs[seq].slot, (int32_t)lengths[i]);
        if (i == 1) entries[count++] = padding(7);
    }
    if (!run_step(f, entries, count, NULL, 0, 0, log)) return 0;
    for (int d = 0; d < decode_steps; ++d) {
        count = 0;
        for (int i = n - 1; i >= 0; --i)
            entries[count++] = continued(seqs[i], f->seqs[seqs[i]].slot, lengths[i] + d, 1);
        entries[count++] = padding(1);
        if (!run_step(f, entries, count, NULL, 0, 24, log)) return 0;
    }
    return 1;
}

typedef struct error_summary {
    double prefill, decode, state;
    int conv_mismatch;
} error_summary;

static int compare_seq_with_naive(fixture *f, int l, int s, int64_t prefill_length, error_summary *worst,
                                  check_log *log)
{
    const test_layer *layer = &f->layers[l];
    const test_seq *seq = &f->seqs[s];
    size_t width = output_row_elements(layer);
    float *ref = malloc((size_t)seq->length * width * sizeof(float));
    naive_state final = {0};
    uint8_t *state = NULL;
    int ok = CHECK(log, ref && naive_state_init(&final, &layer->desc) == 0, "out of host memory") &&
             CHECK(log, naive_for_seq(layer, l, seq, 0, seq->length, NULL, ref, &final) == 0,
                   "naive reference failed") &&
             (state = fixture_read_state(f, l, seq->slot, log)) != NULL;
    if (ok) {
        size_t prefill = (size_t)prefill_length * width, total = (size_t)seq->length * width;
        double prefill_err = rel_err_vs_float(seq->out[l], ref, prefill);
        double decode_err = rel_err_vs_float(seq->out[l] + prefill, ref + prefill, total - prefill);
        int conv_equal = 0;
        double state_err = state_rel_err_vs_naive(layer, state, &final, &conv_equal);
        if (prefill_err > worst->prefill) worst->prefill = prefill_err;
        if (decode_err > worst->decode) worst->decode = decode_err;
        if (state_err > worst->state) worst->state = state_err;
        worst->conv_mismatch += !conv_equal;
        ok = CHECK(log, prefill_err <= REL_TOLERANCE && decode_err <= REL_TOLERANCE,
                   "layer %s, seq of %lld tokens: out rel err %.3g (prefill) %.3g (decode) > %g", layer->name,
                   (long long)prefill_length, prefill_err, decode_err, REL_TOLERANCE) &&
             CHECK(log, state_err <= REL_TOLERANCE, "layer %s, seq of %lld tokens: state rel err %.3g > %g",
                   layer->name, (long long)prefill_length, state_err, REL_TOLERANCE) &&
             CHECK(log, conv_equal, "layer %s, seq of %lld tokens: conv state is not the last W-1 inputs",
                   layer->name, (long long)prefill_length);
    }
    free(state);
    free(ref);
    naive_state_free(&final);
    return ok;
}

scenario_outcome scenario_qwen3next_prefill_decode(const harness *h, check_log *log)
{
    static const int64_t lengths[] = {1, 63, 64, 65, 1000};
    enum { NUM_SEQS = sizeof lengths / sizeof lengths[0], DECODE_STEPS = 3 };
    fixture f;
    uint64_t calls = 0;
    if (fixture_create(&f, h, MODEL_HYBRID, 42, 8, log)) {
        double start = seconds_now();
        if (prefill_and_decode(&f, lengths, NUM_SEQS, DECODE_STEPS, 7, log) && forward_calls(&f, &calls, log))
            CHECK(log, calls == (uint64_t)f.num_layers * (1 + DECODE_STEPS), "stats.forward_calls %llu, made %d",
                  (unsigned long long)calls, f.num_layers * (1 + DECODE_STEPS));
        check_note(log, "library %.2f s", seconds_now() - start);
    }
    error_summary worst = {0, 0, 0, 0};
    for (int l = 0; !log->failed && l < f.num_layers; ++l)
        for (int s = 0; !log->failed && s < NUM_SEQS; ++s) compare_seq_with_naive(&f, l, s, lengths[s], &worst, log);
    check_note(log, "%d layers x %d seqs: max out rel err %.2e prefill, %.2e decode; max state rel err %.2e",
               f.num_layers, NUM_SEQS, worst.prefill, worst.decode, worst.state);
    fixture_destroy(&f);
    return outcome_of(log);
}

/* Every layer's outputs of sequences x and y over positions [from, to), and their final states, must agree. */
static void expect_same_run(fixture *f, int x, int y, int64_t from, int64_t to, const char *what, double *out_diff,
                            double *state_diff, check_log *log)
{
    for (int l = 0; !log->failed && l < f->num_layers; ++l) {
        size_t width = output_row_elements(&f->layers[l]);
        double measure = 0.0;
        agree_outputs(f, log, what, f->seqs[x].out[l] + (size_t)from * width, f->seqs[y].out[l] + (size_t)from * width,
                      (size_t)(to - from) * width, &measure);
        if (measure > *out_diff) *out_diff = measure;
        uint8_t *sx = fixture_read_state(f, l, f->seqs[x].slot, log);
        uint8_t *sy = fixture_read_state(f, l, f->seqs[y].slot, log);
        if (sx && sy && agree_states(f, log, what, l, sx, sy, &measure) && measure > *state_diff)
            *state_diff = measure;
        free(sx);
        free(sy);
    }
}

static void note_agreement(const fixture *f, check_log *log, double out_diff, double state_diff)
{
    check_note(log, f->exact ? "max abs diff out %.3g, state %.3g (bitwise required)"
                             : "rel err out %.3g, state %.3g",
               out_diff, state_diff);
}

scenario_outcome scenario_chunked_prefill(const harness *h, check_log *log)
{
    enum { LENGTH = 200, FIRST = 37, SECOND = 32 }; /* split at 37 and 64 + 5 */
    fixture f;
    double out_diff = 0.0, state_diff = 0.0;
    if (fixture_create(&f, h, MODEL_HYBRID, 3, 4, log)) {
        int whole = fixture_add_seq(&f, LENGTH, 5, log), split = fixture_add_seq(&f, LENGTH, 5, log);
        if (whole >= 0 && split >= 0) {
            int32_t ws = f.seqs[whole].slot, ss = f.seqs[split].slot;
            step_entry step1[] = {fresh(whole, ws, LENGTH), fresh(split, ss, FIRST)};
            step_entry step2[] = {continued(split, ss, FIRST, SECOND)};
            step_entry step3[] = {continued(split, ss, FIRST + SECOND, LENGTH - FIRST - SECOND)};
            if (run_step(&f, step1, 2, NULL, 0, 0, log) && run_step(&f, step2, 1, NULL, 0, 0, log) &&
                run_step(&f, step3, 1, NULL, 0, 0, log))
                expect_same_run(&f, whole, split, 0, LENGTH, "split at 37, 69", &out_diff, &state_diff, log);
        }
    }
    note_agreement(&f, log, out_diff, state_diff);
    fixture_destroy(&f);
    return outcome_of(log);
}

scenario_outcome scenario_prefill_then_decode_equals_decode(const harness *h, check_log *log)
{
    enum { PREFILL = 70, DECODE = 3, LENGTH = PREFILL + DECODE };
    fixture f;
    double out_diff = 0.0, state_diff = 0.0;
    if (fixture_create(&f, h, MODEL_HYBRID, 4, 4, log)) {
        int mixed = fixture_add_seq(&f, LENGTH, 9, log), stepwise = fixture_add_seq(&f, LENGTH, 9, log);
        if (mixed >= 0 && stepwise >= 0) {
            int32_t ms = f.seqs[mixed].slot, ss = f.seqs[stepwise].slot;
            step_entry first[] = {fresh(mixed, ms, PREFILL), fresh(stepwise, ss, 1)};
            int ok = run_step(&f, first, 2, NULL, 0, 0, log);
            for (int64_t t = 1; ok && t < PREFILL; ++t) {
                step_entry one[] = {continued(stepwise, ss, t, 1)};
                ok = run_step(&f, one, 1, NULL, 0, 0, log);
            }
            for (int64_t t = PREFILL; ok && t < LENGTH; ++t) {
                step_entry both[] = {continued(stepwise, ss, t, 1), continued(mixed, ms, t, 1)};
                ok = run_step(&f, both, 2, NULL, 0, 0, log);
            }
            if (ok) expect_same_run(&f, mixed, stepwise, 0, LENGTH, "prefill 70 + decode vs decode", &out_diff,
                                    &state_diff, log);
        }
    }
    note_agreement(&f, log, out_diff, state_diff);
    fixture_destroy(&f);
    return outcome_of(log);
}

static int64_t round_up(int64_t value, int64_t multiple)
{
    return (value + multiple - 1) / multiple * multiple;
}

/* Checkpoint states against the naive state after the same prefix. */
static void expect_checkpoint_like_naive(fixture *f, int seq, int64_t position, int32_t slot, double *worst,
                                         check_log *log)
{
    for (int l = 0; !log->failed && l < f->num_layers; ++l) {
        const test_layer *layer = &f->layers[l];
        const test_seq *s = &f->seqs[seq];
        float *out = malloc((size_t)position * output_row_elements(layer) * sizeof(float));
        naive_state ref = {0};
        uint8_t *state = NULL;
        if (CHECK(log, out && naive_state_init(&ref, &layer->desc) == 0, "out of host memory") &&
            CHECK(log, naive_for_seq(layer, l, s, 0, position, NULL, out, &ref) == 0,
                  "naive reference failed") &&
            (state = fixture_read_state(f, l, slot, log)) != NULL) {
            int conv_equal = 0;
            double err = state_rel_err_vs_naive(layer, state, &ref, &conv_equal);
            if (err > *worst) *worst = err;
            CHECK(log, err <= REL_TOLERANCE && conv_equal,
                  "layer %s: checkpoint at %lld: state rel err %.3g (conv history %s)", layer->name,
                  (long long)position, err, conv_equal ? "exact" : "wrong");
        }
        free(state);
        free(out);
        naive_state_free(&ref);
    }
}

/* The outputs of a sequence restored from a checkpoint against the naive reference started from the checkpoint's
 * bytes (decoded from MATH.md's state layout) and run over the same suffix. */
static void expect_restore_like_naive(fixture *f, int seq, int64_t from, int32_t checkpoint, double *worst,
                                      check_log *log)
{
    for (int l = 0; !log->failed && l < f->num_layers; ++l) {
        const test_layer *layer = &f->layers[l];
        const test_seq *s = &f->seqs[seq];
        size_t width = output_row_elements(layer), n = (size_t)(s->length - from) * width;
        float *ref = malloc(n * sizeof(float));
        naive_state initial = {0};
        uint8_t *bytes = fixture_read_state(f, l, checkpoint, log);
        if (bytes && CHECK(log, ref && naive_state_init(&initial, &layer->desc) == 0, "out of host memory") &&
            CHECK(log, naive_state_from_bytes(&initial, &layer->desc, bytes, layer->info.state_bytes) == 0,
                  "state bytes of the wrong size") &&
            CHECK(log, naive_for_seq(layer, l, s, from, s->length - from, &initial, ref, NULL) == 0,
                  "naive reference failed")) {
            double err = rel_err_vs_float(s->out[l] + (size_t)from * width, ref, n);
            if (err > *worst) *worst = err;
            CHECK(log, err <= REL_TOLERANCE,
                  "layer %s: restored at %lld: out rel err %.3g vs naive from the checkpoint", layer->name,
                  (long long)from, err);
        }
        free(bytes);
        free(ref);
        naive_state_free(&initial);
    }
}

typedef struct slot_snapshot {
    uint8_t *bytes[MAX_LAYERS];
} slot_snapshot;

static int snapshot_slot(fixture *f, int32_t slot, slot_snapshot *snap, check_log *log)
{
    for (int l = 0; l < f->num_layers; ++l)
        if (!(snap->bytes[l] = fixture_read_state(f, l, slot, log))) return 0;
    return 1;
}

static void release_snapshot(slot_snapshot *snap)
{
    for (int l = 0; l < MAX_LAYERS; ++l) free(snap->bytes[l]);
}

static void expect_slot_unchanged(fixture *f, int32_t slot, const slot_snapshot *before, const char *what,
                                  check_log *log)
{
    for (int l = 0; !log->failed && l < f->num_layers; ++l) {
        uint8_t *now = fixture_read_state(f, l, slot, log);
        if (now)
            CHECK(log, memcmp(now, before->bytes[l], f->layers[l].info.state_bytes) == 0,
                  "%s: layer %s slot %d changed", what, f->layers[l].name, slot);
        free(now);
    }
}

static int get_stats(fixture *f, linattn_stats *stats, check_log *log)
{
    memset(stats, 0, sizeof *stats);
    stats->struct_size = sizeof *stats;
    return CHECK_OK(log, f->api, f->api->get_stats(f->context, stats));
}

typedef struct restore_plan {
    int64_t first, second, length; /* checkpoint positions and the sequence length */
} restore_plan;

/* Step 1: prefill with checkpoints at first, second and the end. Step 2: two new sequences start FROM_SLOT the
 * first two checkpoints and run the same suffix. */
static void run_restore(fixture *f, const restore_plan *p, check_log *log)
{
    int original = fixture_add_seq(f, p->length, 21, log);
    int32_t c1 = fixture_alloc_slot(f, log), c2 = fixture_alloc_slot(f, log), c_end = fixture_alloc_slot(f, log);
    int from1 = fixture_add_seq(f, p->length, 21, log), from2 = fixture_add_seq(f, p->length, 21, log);
    if (log->failed || original < 0 || from1 < 0 || from2 < 0) return;
    linattn_stats before, after;
    step_entry prefill[] = {fresh(original, f->seqs[original].slot, (int32_t)p->length)};
    step_checkpoint checkpoints[] = {{0, p->first, c1}, {0, p->second, c2}, {0, p->length, c_end}};
    if (!get_stats(f, &before, log) || !run_step(f, prefill, 1, checkpoints, 3, 0, log)) return;
    double worst = 0.0;
    expect_checkpoint_like_naive(f, original, p->first, c1, &worst, log);
    expect_checkpoint_like_naive(f, original, p->second, c2, &worst, log);
    check_note(log, "checkpoint state rel err vs naive %.2e", worst);
    slot_snapshot snap1 = {{0}}, snap2 = {{0}};
    step_entry restore1 = {from1, p->first, (int32_t)(p->length - p->first), f->seqs[from1].slot,
                           LINATTN_INIT_FROM_SLOT, c1};
    step_entry restore2 = {from2, p->second, (int32_t)(p->length - p->second), f->seqs[from2].slot,
                           LINATTN_INIT_FROM_SLOT, c2};
    step_entry restores[] = {restore1, restore2};
    double out_diff = 0.0, state_diff = 0.0;
    if (!log->failed && snapshot_slot(f, c1, &snap1, log) && snapshot_slot(f, c2, &snap2, log) &&
        run_step(f, restores, 2, NULL, 0, 0, log)) {
        expect_same_run(f, from1, original, p->first, p->length, "restored at first checkpoint", &out_diff,
                        &state_diff, log);
        expect_same_run(f, from2, original, p->second, p->length, "restored at second checkpoint", &out_diff,
                        &state_diff, log);
        expect_slot_unchanged(f, c1, &snap1, "FROM_SLOT source", log);
        expect_slot_unchanged(f, c2, &snap2, "FROM_SLOT source", log);
        double restored_err = 0.0;
        expect_restore_like_naive(f, from1, p->first, c1, &restored_err, log);
        expect_restore_like_naive(f, from2, p->second, c2, &restored_err, log);
        check_note(log, "restored out rel err vs naive from the checkpoint bytes %.2e", restored_err);
    }
    /* The checkpoint at the end of the step is the sequence's final state. */
    for (int l = 0; !log->failed && l < f->num_layers; ++l) {
        uint8_t *end = fixture_read_state(f, l, c_end, log);
        uint8_t *final = fixture_read_state(f, l, f->seqs[original].slot, log);
        double measure = 0.0;
        if (end && final) agree_states(f, log, "checkpoint at the end vs final state", l, end, final, &measure);
        free(end);
        free(final);
    }
    if (!log->failed && get_stats(f, &after, log)) {
        uint64_t layers = (uint64_t)f->num_layers;
        CHECK(log, after.checkpoints_written - before.checkpoints_written == 3 * layers,
              "stats.checkpoints_written grew by %llu, expected %llu",
              (unsigned long long)(after.checkpoints_written - before.checkpoints_written),
              (unsigned long long)(3 * layers));
        CHECK(log, after.checkpoints_restored - before.checkpoints_restored == 2 * layers,
              "stats.checkpoints_restored grew by %llu, expected %llu",
              (unsigned long long)(after.checkpoints_restored - before.checkpoints_restored),
              (unsigned long long)(2 * layers));
    }
    note_agreement(f, log, out_diff, state_diff);
    release_snapshot(&snap1);
    release_snapshot(&snap2);
}

scenario_outcome scenario_checkpoint_restore(const harness *h, check_log *log)
{
    fixture f;
    scenario_outcome outcome = OUTCOME_PASS;
    if (fixture_create(&f, h, MODEL_HYBRID, 5, 8, log)) {
        int64_t alignment = f.caps.checkpoint_alignment;
        restore_plan p;
        p.first = round_up(64, alignment);
        p.second = round_up(128, alignment);
        if (p.second == p.first) p.second += alignment;
        p.length = p.second + 37;
        check_note(log, "alignment %lld, checkpoints at %lld, %lld, %lld", (long long)alignment, (long long)p.first,
                   (long long)p.second, (long long)p.length);
        if (p.length > 2048)
            outcome = OUTCOME_SKIP; /* the naive reference would make the run too slow */
        else
            run_restore(&f, &p, log);
    }
    fixture_destroy(&f);
    return log->failed ? OUTCOME_FAIL : outcome;
}

/* ---- two threads ---- */

static const int64_t thread_lengths[] = {1, 63, 64, 65, 130};
enum { THREAD_SEQS = sizeof thread_lengths / sizeof thread_lengths[0], THREAD_DECODE = 3 };

typedef struct job {
    const harness *h;
    uint64_t seed;
    check_log log;
    fixture f;
    uint8_t *states[MAX_LAYERS][THREAD_SEQS];
} job;

static void *run_job(void *arg)
{
    job *j = arg;
    if (!fixture_create(&j->f, j->h, MODEL_HYBRID, j->seed, THREAD_SEQS, &j->log)) return NULL;
    if (!prefill_and_decode(&j->f, thread_lengths, THREAD_SEQS, THREAD_DECODE, j->seed, &j->log)) return NULL;
    for (int l = 0; l < j->f.num_layers; ++l)
        for (int s = 0; s < THREAD_SEQS; ++s)
            if (!(j->states[l][s] = fixture_read_state(&j->f, l, j->f.seqs[s].slot, &j->log))) return NULL;
    return NULL;
}

static void release_job(job *j)
{
    for (int l = 0; l < MAX_LAYERS; ++l)
        for (int s = 0; s < THREAD_SEQS; ++s) free(j->states[l][s]);
    fixture_destroy(&j->f);
}

static void absorb(check_log *log, const job *j, const char *who)
{
    if (j->log.failed) check_fail(log, __LINE__, "%s: %s", who, j->log.failure);
}

static void expect_same_job(check_log *log, job *concurrent, const job *alone, double *out_diff, double *state_diff)
{
    fixture *f = &concurrent->f;
    for (int l = 0; !log->failed && l < f->num_layers; ++l) {
        for (int s = 0; !log->failed && s < THREAD_SEQS; ++s) {
            size_t n = (size_t)f->seqs[s].length * output_row_elements(&f->layers[l]);
            double measure = 0.0;
            if (agree_outputs(f, log, "concurrent vs alone", f->seqs[s].out[l], alone->f.seqs[s].out[l], n,
                              &measure) &&
                measure > *out_diff)
                *out_diff = measure;
            if (agree_states(f, log, "concurrent vs alone", l, concurrent->states[l][s], alone->states[l][s],
                             &measure) &&
                measure > *state_diff)
                *state_diff = measure;
        }
    }
}

scenario_outcome scenario_two_threads(const harness *h, check_log *log)
{
    job alone[2], concurrent[2];
    memset(alone, 0, sizeof alone);
    memset(concurrent, 0, sizeof concurrent);
    for (int i = 0; i < 2; ++i) {
        alone[i].h = concurrent[i].h = h;
        alone[i].seed = concurrent[i].seed = 11u * (uint64_t)(i + 1);
    }
    double start = seconds_now();
    run_job(&alone[0]);
    run_job(&alone[1]);
    double serial = seconds_now() - start;
    absorb(log, &alone[0], "single thread, first job");
    absorb(log, &alone[1], "single thread, second job");
    pthread_t threads[2];
    int started[2] = {0, 0};
    start = seconds_now();
    for (int i = 0; !log->failed && i < 2; ++i)
        started[i] = CHECK(log, pthread_create(&threads[i], NULL, run_job, &concurrent[i]) == 0, "pthread_create");
    for (int i = 0; i < 2; ++i)
        if (started[i]) pthread_join(threads[i], NULL);
    double parallel = seconds_now() - start;
    absorb(log, &concurrent[0], "thread 1");
    absorb(log, &concurrent[1], "thread 2");
    double out_diff = 0.0, state_diff = 0.0;
    for (int i = 0; !log->failed && i < 2; ++i) expect_same_job(log, &concurrent[i], &alone[i], &out_diff, &state_diff);
    if (!log->failed) note_agreement(&concurrent[0].f, log, out_diff, state_diff);
    check_note(log, "2 jobs: %.2f s one after the other, %.2f s on two threads", serial, parallel);
    for (int i = 0; i < 2; ++i) {
        release_job(&alone[i]);
        release_job(&concurrent[i]);
    }
    return outcome_of(log);
}

/* ---- CUDA graph ---- */

enum { GRAPH_SEQS = 6, GRAPH_ROWS = 8, GRAPH_REPLAYS = 3, GRAPH_STEPS = 1 + GRAPH_REPLAYS };
static const int64_t graph_prefill[GRAPH_SEQS] = {5, 40, 64, 65, 1, 130};
/* Decode batches of one token per entry: a sequence index, or -1 for a padding sequence (LINATTN_SLOT_NONE). The
 * first runs eagerly on the graph's plan (warm-up) and is the batch set while capturing; each replay sets another
 * one: other slots, in another order, padding elsewhere, and once fewer sequences and rows than captured. */
static const int graph_batch_sizes[GRAPH_STEPS] = {8, 8, 6, 8};
static const int graph_batches[GRAPH_STEPS][GRAPH_ROWS] = {
    {0, 1, 2, 3, 4, 5, -1, -1},
    {3, -1, 0, 5, -1, 1, 2, -1},
    {-1, 4, 2, 0, -1, 3},
    {5, 4, 1, 3, 0, -1, -1, 2},
};

/* Entries of decode batch `step` for f's sequences; positions[] (the next position of each sequence) advance. */
static int graph_entries(const fixture *f, int step, int64_t *positions, step_entry *entries)
{
    for (int e = 0; e < graph_batch_sizes[step]; ++e) {
        int seq = graph_batches[step][e];
        entries[e] = seq < 0 ? padding(1) : continued(seq, f->seqs[seq].slot, positions[seq]++, 1);
    }
    return graph_batch_sizes[step];
}

/* The sequences (prefill plus one token per decode batch they are in), prefilled in one eager step. */
static int graph_prefill_seqs(fixture *f, check_log *log)
{
    step_entry entries[GRAPH_SEQS];
    for (int s = 0; s < GRAPH_SEQS; ++s) {
        int64_t length = graph_prefill[s];
        for (int step = 0; step < GRAPH_STEPS; ++step)
            for (int e = 0; e < graph_batch_sizes[step]; ++e) length += graph_batches[step][e] == s;
        int seq = fixture_add_seq(f, length, 600u + (uint64_t)s, log);
        if (seq < 0) return 0;
        entries[s] = fresh(seq, f->seqs[seq].slot, (int32_t)graph_prefill[s]);
    }
    return run_step(f, entries, GRAPH_SEQS, NULL, 0, 0, log);
}

/* Every layer's forward on the step's plan, captured on f's stream into *graph. Capture always ends, also when a
 * forward fails, so the stream is left usable. */
static int capture_forwards(fixture *f, prepared_step *step, devmem_graph **graph, size_t *nodes, check_log *log)
{
    if (!CHECK(log, devmem_capture_begin(f->stream) == 0, "could not start capturing: %s", devmem_last_error()))
        return 0;
    int ok = 1;
    for (int l = 0; ok && l < f->num_layers; ++l)
        ok = CHECK(log, f->api->forward(f->layers[l].handle, step->plan, &step->args[l], f->stream) == LINATTN_OK,
                   "forward of layer %s during stream capture failed: %s", f->layers[l].name,
                   f->api->last_error_message());
    int ended = devmem_capture_end(f->stream, graph, nodes) == 0;
    return ok && CHECK(log, ended, "capturing the forwards into a graph failed: %s", devmem_last_error()) &&
           CHECK(log, *nodes > 0, "the captured graph is empty: forward enqueued nothing on the capturing stream");
}

static int launch_graph(fixture *f, prepared_step *step, void *graph, check_log *log)
{
    (void)step;
    return CHECK(log, devmem_graph_launch(graph, f->stream) == 0, "graph replay failed: %s", devmem_last_error());
}

/* Outputs and states of the graph run against the eager run of the same steps, and against the naive reference. */
static void expect_graph_like_eager(fixture *graph, fixture *eager, check_log *log)
{
    double out_diff = 0.0, state_diff = 0.0;
    error_summary worst = {0, 0, 0, 0};
    for (int l = 0; !log->failed && l < graph->num_layers; ++l) {
        for (int s = 0; !log->failed && s < GRAPH_SEQS; ++s) {
            size_t n = (size_t)graph->seqs[s].length * output_row_elements(&graph->layers[l]);
            double measure = 0.0;
            if (agree_outputs(graph, log, "graph replays vs eager", graph->seqs[s].out[l], eager->seqs[s].out[l], n,
                              &measure) &&
                measure > out_diff)
                out_diff = measure;
            uint8_t *sg = fixture_read_state(graph, l, graph->seqs[s].slot, log);
            uint8_t *se = fixture_read_state(eager, l, eager->seqs[s].slot, log);
            if (sg && se && agree_states(graph, log, "graph replays vs eager", l, sg, se, &measure) &&
                measure > state_diff)
                state_diff = measure;
            free(sg);
            free(se);
            if (!log->failed) compare_seq_with_naive(graph, l, s, graph_prefill[s], &worst, log);
        }
    }
    check_note(log, "vs eager: %s out %.3g, state %.3g; vs naive: max out rel err %.2e prefill, %.2e decode, "
               "state %.2e", graph->exact ? "max abs diff" : "rel err", out_diff, state_diff, worst.prefill,
               worst.decode, worst.state);
}

static int graph_stats(fixture *f, linattn_stats *stats, check_log *log)
{
    memset(stats, 0, sizeof *stats);
    stats->struct_size = sizeof *stats;
    return CHECK_OK(log, f->api, f->api->get_stats(f->context, stats));
}

/* The forwards ran once (captured) and replayed GRAPH_REPLAYS times; the counters must have moved, at capture or
 * at replay (the header leaves which to the library). */
static void expect_stats_moved(fixture *f, const linattn_stats *before, const linattn_stats *captured,
                               check_log *log)
{
    linattn_stats after;
    if (!graph_stats(f, &after, log)) return;
    uint64_t calls = after.forward_calls - before->forward_calls;
    uint64_t tokens = after.tokens_processed - before->tokens_processed;
    check_note(log, "stats: forward_calls +%llu at capture, +%llu over the replays; tokens_processed +%llu",
               (unsigned long long)(captured->forward_calls - before->forward_calls),
               (unsigned long long)(after.forward_calls - captured->forward_calls), (unsigned long long)tokens);
    CHECK(log, calls >= (uint64_t)f->num_layers && tokens > 0,
          "stats did not move: forward_calls +%llu (at least %d forwards were captured), tokens_processed +%llu",
          (unsigned long long)calls, f->num_layers, (unsigned long long)tokens);
}

/* Warm-up on the graph plan, capture, then the replays, each with a new batch and new inputs in the same buffers.
 * The eager fixture runs the same batches with plain forward calls. */
static void run_graph_steps(fixture *g, fixture *e, linattn_plan *plan, prepared_step *step, devmem_graph **graph,
                            check_log *log)
{
    int64_t graph_positions[GRAPH_SEQS], eager_positions[GRAPH_SEQS];
    memcpy(graph_positions, graph_prefill, sizeof graph_positions);
    memcpy(eager_positions, graph_prefill, sizeof eager_positions);
    step_entry entries[GRAPH_ROWS];
    int n = graph_entries(g, 0, graph_positions, entries);
    if (!step_prepare(g, step, entries, n, NULL, 0, 0, log)) return;
    step->plan = plan;
    n = graph_entries(e, 0, eager_positions, entries);
    if (!step_set_batch(g, step, log) || !step_forward(g, step, log) || !run_step(e, entries, n, NULL, 0, 0, log))
        return;
    linattn_stats before, captured;
    size_t nodes = 0;
    if (!graph_stats(g, &before, log) || !capture_forwards(g, step, graph, &nodes, log) ||
        !graph_stats(g, &captured, log))
        return;
    check_note(log, "%zu graph nodes for %d layers", nodes, g->num_layers);
    for (int r = 1; r < GRAPH_STEPS; ++r) {
        n = graph_entries(g, r, graph_positions, entries);
        if (!step_refill(g, step, entries, n, log) || !step_set_batch(g, step, log) ||
            !step_forward_by(g, step, launch_graph, *graph, log))
            return;
        n = graph_entries(e, r, eager_positions, entries);
        if (!run_step(e, entries, n, NULL, 0, 0, log)) return;
    }
    expect_stats_moved(g, &before, &captured, log);
}

scenario_outcome scenario_cuda_graph(const harness *h, check_log *log)
{
    if (h->backend != LINATTN_BACKEND_CUDA) {
        check_note(log, "needs the CUDA backend (this run uses the CPU backend)");
        return OUTCOME_SKIP;
    }
    if (!CHECK(log, devmem_graphs_available(), "libcudart has no CUDA graph entry points")) return OUTCOME_FAIL;
    fixture g, e;
    memset(&g, 0, sizeof g);
    memset(&e, 0, sizeof e);
    prepared_step *step = calloc(1, sizeof *step);
    devmem_graph *graph = NULL;
    linattn_plan *plan = NULL;
    linattn_plan_desc limits = {sizeof limits, GRAPH_ROWS, 0, GRAPH_ROWS};
    if (CHECK(log, step != NULL, "out of host memory") && fixture_create(&g, h, MODEL_HYBRID, 6, GRAPH_ROWS, log) &&
        fixture_create(&e, h, MODEL_HYBRID, 6, GRAPH_ROWS, log) && graph_prefill_seqs(&g, log) &&
        graph_prefill_seqs(&e, log) && CHECK_OK(log, g.api, g.api->plan_create(g.pool, &limits, &plan))) {
        run_graph_steps(&g, &e, plan, step, &graph, log);
        if (!log->failed) expect_graph_like_eager(&g, &e, log);
    }
    /* The graph refers to the plan's memory and the step's buffers: it goes first, the context (and plan) last. */
    devmem_graph_destroy(graph);
    if (step) step_release(step);
    free(step);
    fixture_destroy(&g);
    fixture_destroy(&e);
    return outcome_of(log);
}
