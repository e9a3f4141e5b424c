/* devmem.c — see devmem.h. */
#include "integration/common/devmem.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The few CUDA runtime entry points used, declared by hand (cudaError_t is an int-sized enum, 0 = success). */
typedef int (*cuda_malloc_fn)(void **pointer, size_t bytes);
typedef int (*cuda_free_fn)(void *pointer);
typedef int (*cuda_memcpy_async_fn)(void *dst, const void *src, size_t bytes, int kind, linattn_stream_t stream);
typedef int (*cuda_stream_sync_fn)(linattn_stream_t stream);
typedef int (*cuda_stream_create_fn)(linattn_stream_t *stream, unsigned int flags);
typedef int (*cuda_stream_destroy_fn)(linattn_stream_t stream);

enum { CUDA_MEMCPY_HOST_TO_DEVICE = 1, CUDA_MEMCPY_DEVICE_TO_HOST = 2, CUDA_STREAM_NON_BLOCKING = 1 };

static struct {
    int on_device;
    cuda_malloc_fn malloc_;
    cuda_free_fn free_;
    cuda_memcpy_async_fn memcpy_async;
    cuda_stream_sync_fn stream_sync;
    cuda_stream_create_fn stream_create;
    cuda_stream_destroy_fn stream_destroy;
} cuda;

/* dlsym returns void *; converting it to a function pointer goes through memcpy to stay ISO C. */
static int resolve(void *library, const char *name, void *function_pointer, size_t size)
{
    void *symbol = dlsym(library, name);
    if (!symbol) return -1;
    memcpy(function_pointer, &symbol, size);
    return 0;
}

int devmem_setup(linattn_backend_kind backend, char *why, size_t why_len)
{
    if (backend != LINATTN_BACKEND_CUDA) return 0;
    static const char *const names[] = {"libcudart.so", "libcudart.so.13", "libcudart.so.12"};
    void *library = NULL;
    for (size_t i = 0; i < sizeof names / sizeof names[0] && !library; ++i)
        library = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!library) {
        snprintf(why, why_len, "CUDA backend needs libcudart for device buffers: %s", dlerror());
        return -1;
    }
    int failed = resolve(library, "cudaMalloc", &cuda.malloc_, sizeof cuda.malloc_) |
                 resolve(library, "cudaFree", &cuda.free_, sizeof cuda.free_) |
                 resolve(library, "cudaMemcpyAsync", &cuda.memcpy_async, sizeof cuda.memcpy_async) |
                 resolve(library, "cudaStreamSynchronize", &cuda.stream_sync, sizeof cuda.stream_sync) |
                 resolve(library, "cudaStreamCreateWithFlags", &cuda.stream_create, sizeof cuda.stream_create) |
                 resolve(library, "cudaStreamDestroy", &cuda.stream_destroy, sizeof cuda.stream_destroy);
    if (failed) {
        snprintf(why, why_len, "libcudart lacks an expected entry point");
        return -1;
    }
    cuda.on_device = 1;
    return 0;
}

void *devmem_alloc(size_t bytes)
{
    if (!cuda.on_device) return malloc(bytes ? bytes : 1);
    void *pointer = NULL;
    return cuda.malloc_(&pointer, bytes ? bytes : 1) == 0 ? pointer : NULL;
}

void devmem_free(void *pointer)
{
    if (!cuda.on_device)
        free(pointer);
    else if (pointer)
        cuda.free_(pointer);
}

static int copy(void *dst, const void *src, size_t bytes, int kind, linattn_stream_t stream)
{
    if (!cuda.on_device) {
        if (bytes) memcpy(dst, src, bytes);
        return 0;
    }
    if (cuda.memcpy_async(dst, src, bytes, kind, stream) != 0) return -1;
    return cuda.stream_sync(stream) == 0 ? 0 : -1;
}

int devmem_upload(void *device_dst, const void *host_src, size_t bytes, linattn_stream_t stream)
{
    return copy(device_dst, host_src, bytes, CUDA_MEMCPY_HOST_TO_DEVICE, stream);
}

int devmem_download(void *host_dst, const void *device_src, size_t bytes, linattn_stream_t stream)
{
    return copy(host_dst, device_src, bytes, CUDA_MEMCPY_DEVICE_TO_HOST, stream);
}

int devmem_stream_create(linattn_stream_t *stream)
{
    *stream = NULL;
    if (!cuda.on_device) return 0;
    return cuda.stream_create(stream, CUDA_STREAM_NON_BLOCKING) == 0 ? 0 : -1;
}

void devmem_stream_destroy(linattn_stream_t stream)
{
    if (cuda.on_device && stream) cuda.stream_destroy(stream);
}
