/* test_abi_version.c — version negotiation of linattn_get_api, the table it returns, the version string, the
 * capabilities of a CPU context and the thread-locality of last_error_message. */
#include <threads.h>

#include "support/harness.h"

static const linattn_api sentinel_table; /* stands for "the host's previous value" of an out pointer */

static void expect_refused(uint32_t major, uint32_t minor, linattn_status want)
{
    const linattn_api *table = api();
    const linattn_api *out = &sentinel_table;
    linattn_status status = linattn_get_api(major, minor, &out);
    const char *message = table->last_error_message();
    cr_assert_eq(status, want, "linattn_get_api(%u, %u) returned %d, expected %d", major, minor, status, want);
    cr_assert(message != NULL && message[0] != '\0', "linattn_get_api(%u, %u) failed without a message", major,
              minor);
    cr_assert(out == &sentinel_table, "linattn_get_api(%u, %u) wrote its out pointer on error", major, minor);
}

Test(abi_version, current_version_gives_a_complete_table)
{
    const linattn_api *table = NULL;
    cr_assert_eq(linattn_get_api(LINATTN_ABI_VERSION_MAJOR, LINATTN_ABI_VERSION_MINOR, &table), LINATTN_OK);
    cr_assert_not_null(table);
    cr_assert_eq(table->abi_major, LINATTN_ABI_VERSION_MAJOR);
    cr_assert_geq(table->abi_minor, LINATTN_ABI_VERSION_MINOR);
    cr_assert_geq(table->struct_size, sizeof(linattn_api), "table struct_size %u < sizeof(linattn_api) %zu",
                  table->struct_size, sizeof(linattn_api));
    /* Every entry of the 1.0 table is callable (the spec entries may answer NOT_IMPLEMENTED, but exist). */
    void (*const entries[])(void) = {
        (void (*)(void))table->version_string,   (void (*)(void))table->last_error_message,
        (void (*)(void))table->context_create,   (void (*)(void))table->context_destroy,
        (void (*)(void))table->query_capabilities, (void (*)(void))table->layer_create,
        (void (*)(void))table->layer_destroy,    (void (*)(void))table->layer_info,
        (void (*)(void))table->pool_create,      (void (*)(void))table->pool_destroy,
        (void (*)(void))table->pool_info,        (void (*)(void))table->slot_alloc,
        (void (*)(void))table->slot_free,        (void (*)(void))table->slot_copy,
        (void (*)(void))table->slot_zero,        (void (*)(void))table->slot_read,
        (void (*)(void))table->slot_write,       (void (*)(void))table->plan_create,
        (void (*)(void))table->plan_destroy,     (void (*)(void))table->plan_set_batch,
        (void (*)(void))table->forward,          (void (*)(void))table->spec_verify,
        (void (*)(void))table->spec_commit,      (void (*)(void))table->get_stats,
    };
    for (size_t i = 0; i < sizeof entries / sizeof entries[0]; i++)
        cr_assert_not_null(entries[i], "table entry %zu is NULL", i);
}

Test(abi_version, older_host_minor_is_accepted)
{
    const linattn_api *current = api();
    const linattn_api *table = NULL;
    cr_assert_eq(linattn_get_api(LINATTN_ABI_VERSION_MAJOR, 0, &table), LINATTN_OK);
    cr_assert_not_null(table);
    cr_assert_eq(table->abi_major, LINATTN_ABI_VERSION_MAJOR);
    /* The library answers with its own minor, whatever older minor the host asked for. */
    cr_assert_eq(table->abi_minor, current->abi_minor);
    cr_assert_geq(table->struct_size, sizeof(linattn_api));
}

Test(abi_version, other_majors_are_refused)
{
    expect_refused(0, 0, LINATTN_ERR_ABI_VERSION);
    expect_refused(LINATTN_ABI_VERSION_MAJOR + 1, 0, LINATTN_ERR_ABI_VERSION);
    expect_refused(UINT32_MAX, LINATTN_ABI_VERSION_MINOR, LINATTN_ERR_ABI_VERSION);
}

Test(abi_version, newer_minor_than_library_is_refused)
{
    uint32_t library_minor = api()->abi_minor;
    expect_refused(LINATTN_ABI_VERSION_MAJOR, library_minor + 1, LINATTN_ERR_ABI_VERSION);
    expect_refused(LINATTN_ABI_VERSION_MAJOR, UINT32_MAX, LINATTN_ERR_ABI_VERSION);
}

Test(abi_version, null_out_pointer_is_refused)
{
    const linattn_api *table = api();
    cr_assert_eq(linattn_get_api(LINATTN_ABI_VERSION_MAJOR, LINATTN_ABI_VERSION_MINOR, NULL),
                 LINATTN_ERR_NULL_ARGUMENT);
    const char *message = table->last_error_message();
    cr_assert(message != NULL && message[0] != '\0');
}

Test(abi_version, version_string_matches_capabilities)
{
    const char *version = api()->version_string();
    cr_assert(version != NULL && version[0] != '\0', "empty version string");
    cr_assert_eq(api()->version_string(), version, "version string is not static storage");

    linattn_context *context = cpu_context();
    linattn_capabilities caps;
    memset(&caps, 0, sizeof caps);
    caps.struct_size = sizeof caps;
    expect_ok(api()->query_capabilities(context, &caps));
    char numbers[64];
    snprintf(numbers, sizeof numbers, "%d.%d.%d", caps.version_major, caps.version_minor, caps.version_patch);
    cr_assert(strstr(version, numbers) != NULL, "version string \"%s\" does not name version %s", version, numbers);
    expect_ok(api()->context_destroy(context));
}

Test(abi_version, cpu_capabilities)
{
    linattn_context *context = cpu_context();
    linattn_capabilities caps;
    memset(&caps, 0x5a, sizeof caps);
    caps.struct_size = sizeof caps;
    expect_ok(api()->query_capabilities(context, &caps));
    cr_assert_eq(caps.struct_size, sizeof caps);
    cr_assert_eq(caps.backend, LINATTN_BACKEND_CPU);
    cr_assert(caps.layer_kinds & (1u << LINATTN_LAYER_GATED_DELTANET), "layer_kinds 0x%x", caps.layer_kinds);
    cr_assert(caps.layer_kinds & (1u << LINATTN_LAYER_SIMPLE_GLA), "layer_kinds 0x%x", caps.layer_kinds);
    cr_assert(caps.state_dtypes & (1u << LINATTN_DTYPE_F32), "state_dtypes 0x%x", caps.state_dtypes);
    cr_assert(caps.state_dtypes & (1u << LINATTN_DTYPE_BF16), "state_dtypes 0x%x", caps.state_dtypes);
    cr_assert_geq(caps.checkpoint_alignment, 1);
    cr_assert_geq(caps.max_draft_tokens, 0);
    cr_assert_eq(caps.abi_major, (int32_t)api()->abi_major);
    cr_assert_eq(caps.abi_minor, (int32_t)api()->abi_minor);
    cr_assert(memchr(caps.device_name, '\0', sizeof caps.device_name) != NULL, "device_name not terminated");
    expect_ok(api()->context_destroy(context));
}

Test(abi_version, destroying_null_context_is_ok)
{
    expect_ok(api()->context_destroy(NULL));
}

/* --- last_error_message is per thread ---------------------------------------------------------------------- */

typedef struct thread_report {
    char before[256]; /* this thread's message before it failed anything */
    char after[256];  /* after its own failed call */
} thread_report;

static int fail_in_thread(void *argument)
{
    thread_report *report = argument;
    const linattn_api *table = NULL;
    if (linattn_get_api(LINATTN_ABI_VERSION_MAJOR, LINATTN_ABI_VERSION_MINOR, &table) != LINATTN_OK) return 1;
    snprintf(report->before, sizeof report->before, "%s", table->last_error_message());
    if (table->context_create(NULL, NULL) != LINATTN_ERR_NULL_ARGUMENT) return 2;
    snprintf(report->after, sizeof report->after, "%s", table->last_error_message());
    return 0;
}

Test(abi_version, last_error_message_is_thread_local)
{
    const linattn_api *table = api();
    cr_assert_eq(linattn_get_api(0, 0, &table), LINATTN_ERR_ABI_VERSION);
    char mine[256];
    snprintf(mine, sizeof mine, "%s", table->last_error_message());
    cr_assert(mine[0] != '\0');

    thread_report report = {{0}, {0}};
    thrd_t thread;
    int result = -1;
    cr_assert_eq(thrd_create(&thread, fail_in_thread, &report), thrd_success);
    cr_assert_eq(thrd_join(thread, &result), thrd_success);
    cr_assert_eq(result, 0, "the thread's calls did not answer as expected (%d)", result);
    cr_assert_str_empty(report.before, "a new thread sees another thread's message \"%s\"", report.before);
    cr_assert_str_not_empty(report.after);
    cr_assert_str_eq(table->last_error_message(), mine, "this thread's message changed after another thread failed");
}
