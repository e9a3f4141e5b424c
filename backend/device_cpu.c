/* The CPU backend: "device" memory is host memory, every operation is synchronous, streams are ignored. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "kernels/reference/la_reference.h"

static linattn_status cpu_alloc(const linattn_context *ctx, size_t bytes, void **out)
{
    (void)ctx;
    void *p = malloc(bytes ? bytes : 1);
    if (!p) return fail(LINATTN_ERR_OUT_OF_MEMORY, "out of host memory allocating %zu bytes", bytes);
    *out = p;
    return LINATTN_OK;
}

static void cpu_release(const linattn_context *ctx, void *ptr)
{
    (void)ctx;
    free(ptr);
}

static linattn_status cpu_copy(const linattn_context *ctx, void *dst, const void *src, size_t bytes,
                               linattn_stream_t stream)
{
    (void)ctx, (void)stream;
    memmove(dst, src, bytes);
    return LINATTN_OK;
}

static linattn_status cpu_zero(const linattn_context *ctx, void *dst, size_t bytes, linattn_stream_t stream)
{
    (void)ctx, (void)stream;
    memset(dst, 0, bytes);
    return LINATTN_OK;
}

static linattn_status cpu_synchronize(const linattn_context *ctx)
{
    (void)ctx;
    return LINATTN_OK;
}

static linattn_status cpu_forward(const linattn_context *ctx, const la_layer *layer, const la_batch *batch,
                                  const la_io *io, const la_state_view *state, linattn_stream_t stream)
{
    (void)ctx, (void)stream;
    if (la_reference_forward(layer, batch, io, state) != 0)
        return fail(LINATTN_ERR_OUT_OF_MEMORY, "out of host memory for the reference forward's scratch");
    return LINATTN_OK;
}

const device_ops cpu_device_ops = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .release = cpu_release,
    .upload = cpu_copy,
    .download = cpu_copy,
    .copy = cpu_copy,
    .zero = cpu_zero,
    .synchronize = cpu_synchronize,
    .forward = cpu_forward,
    .device_batch = false,
};
