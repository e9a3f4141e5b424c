/*
 * The CUDA backend's memory and launch operations. Every call makes the context's device current for its
 * duration and restores the host thread's previous device, so a host driving several GPUs is not surprised.
 */
#if LINATTN_WITH_CUDA
#include <cuda_runtime_api.h>
#include <string.h>

#include "internal.h"
#include "kernels/cuda/la_cuda.h"

typedef struct device_scope {
    int previous;
    cudaError_t error;
} device_scope;

static device_scope enter_device(const linattn_context *ctx)
{
    device_scope scope = {0, cudaSuccess};
    scope.error = cudaGetDevice(&scope.previous);
    if (scope.error == cudaSuccess && scope.previous != ctx->device_ordinal)
        scope.error = cudaSetDevice(ctx->device_ordinal);
    return scope;
}

static void leave_device(const linattn_context *ctx, device_scope scope)
{
    if (scope.previous != ctx->device_ordinal) cudaSetDevice(scope.previous);
}

static linattn_status cuda_status(cudaError_t error, const char *what)
{
    if (error == cudaSuccess) return LINATTN_OK;
    cudaGetLastError(); /* clear a non-sticky error so the next call starts clean */
    if (error == cudaErrorMemoryAllocation)
        return fail(LINATTN_ERR_OUT_OF_MEMORY, "%s: out of device memory (%s)", what, cudaGetErrorString(error));
    return fail(LINATTN_ERR_DEVICE, "%s: %s", what, cudaGetErrorString(error));
}

linattn_status cuda_device_probe(int32_t ordinal, char *name, size_t name_size)
{
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
        cudaGetLastError();
        return fail(LINATTN_ERR_NO_DEVICE, "no CUDA device is available");
    }
    if (ordinal >= count)
        return fail(LINATTN_ERR_NO_DEVICE, "CUDA device %d requested, %d present", ordinal, count);
    struct cudaDeviceProp prop;
    cudaError_t error = cudaGetDeviceProperties(&prop, ordinal);
    if (error != cudaSuccess) return cuda_status(error, "cudaGetDeviceProperties");
    if (prop.major < 9)
        return fail(LINATTN_ERR_NO_DEVICE, "CUDA device %d (%s) is sm_%d%d; this build needs sm_90 (Hopper)", ordinal,
                    prop.name, prop.major, prop.minor);
    strncpy(name, prop.name, name_size - 1);
    name[name_size - 1] = '\0';
    return LINATTN_OK;
}

static linattn_status cuda_alloc(const linattn_context *ctx, size_t bytes, void **out)
{
    device_scope scope = enter_device(ctx);
    cudaError_t error = scope.error;
    if (error == cudaSuccess) error = cudaMalloc(out, bytes ? bytes : 1);
    leave_device(ctx, scope);
    return cuda_status(error, "cudaMalloc");
}

static void cuda_release(const linattn_context *ctx, void *ptr)
{
    device_scope scope = enter_device(ctx);
    cudaFree(ptr);
    leave_device(ctx, scope);
}

static linattn_status cuda_memcpy(const linattn_context *ctx, void *dst, const void *src, size_t bytes,
                                  enum cudaMemcpyKind kind, linattn_stream_t stream, bool wait)
{
    device_scope scope = enter_device(ctx);
    cudaError_t error = scope.error;
    if (error == cudaSuccess) error = cudaMemcpyAsync(dst, src, bytes, kind, (cudaStream_t)stream);
    if (error == cudaSuccess && wait) error = cudaStreamSynchronize((cudaStream_t)stream);
    leave_device(ctx, scope);
    return cuda_status(error, "cudaMemcpyAsync");
}

static linattn_status cuda_upload(const linattn_context *ctx, void *dst, const void *src, size_t bytes,
                                  linattn_stream_t stream)
{
    return cuda_memcpy(ctx, dst, src, bytes, cudaMemcpyHostToDevice, stream, false);
}

static linattn_status cuda_download(const linattn_context *ctx, void *dst, const void *src, size_t bytes,
                                    linattn_stream_t stream)
{
    return cuda_memcpy(ctx, dst, src, bytes, cudaMemcpyDeviceToHost, stream, true);
}

static linattn_status cuda_copy(const linattn_context *ctx, void *dst, const void *src, size_t bytes,
                                linattn_stream_t stream)
{
    return cuda_memcpy(ctx, dst, src, bytes, cudaMemcpyDeviceToDevice, stream, false);
}

static linattn_status cuda_zero(const linattn_context *ctx, void *dst, size_t bytes, linattn_stream_t stream)
{
    device_scope scope = enter_device(ctx);
    cudaError_t error = scope.error;
    if (error == cudaSuccess) error = cudaMemsetAsync(dst, 0, bytes, (cudaStream_t)stream);
    leave_device(ctx, scope);
    return cuda_status(error, "cudaMemsetAsync");
}

static linattn_status cuda_synchronize(const linattn_context *ctx)
{
    device_scope scope = enter_device(ctx);
    cudaError_t error = scope.error;
    if (error == cudaSuccess) error = cudaDeviceSynchronize();
    leave_device(ctx, scope);
    return cuda_status(error, "cudaDeviceSynchronize");
}

static linattn_status cuda_forward(const linattn_context *ctx, const la_layer *layer, const la_batch *batch,
                                   const la_io *io, const la_state_view *state, linattn_stream_t stream)
{
    device_scope scope = enter_device(ctx);
    cudaError_t error = scope.error;
    if (error == cudaSuccess) error = (cudaError_t)la_cuda_forward(layer, batch, io, state, stream);
    leave_device(ctx, scope);
    return cuda_status(error, "forward kernel launch");
}

const device_ops cuda_device_ops = {
    .name = "cuda",
    .alloc = cuda_alloc,
    .release = cuda_release,
    .upload = cuda_upload,
    .download = cuda_download,
    .copy = cuda_copy,
    .zero = cuda_zero,
    .synchronize = cuda_synchronize,
    .forward = cuda_forward,
    .workspace_bytes = la_cuda_forward_workspace_bytes,
    .device_batch = true,
};
#else
/* ISO C needs at least one declaration in a translation unit. */
typedef int linattn_no_cuda_backend;
#endif
