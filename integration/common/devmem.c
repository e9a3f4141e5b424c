/* devmem.c — see devmem.h. */
#include "integration/common/devmem.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The few CUDA runtime entry points used, declared by hand (cudaError_t is an int-sized enum, 0 = success).
 * cudaGraph_t and cudaGraphExec_t are opaque pointers; only their addresses pass through here. */
typedef int (*cuda_malloc_fn)(void **pointer, size_t bytes);
typedef int (*cuda_free_fn)(void *pointer);
typedef int (*cuda_memcpy_async_fn)(void *dst, const void *src, size_t bytes, int kind, linattn_stream_t stream);
typedef int (*cuda_stream_sync_fn)(linattn_stream_t stream);
typedef int (*cuda_stream_create_fn)(linattn_stream_t *stream, unsigned int flags);
typedef int (*cuda_stream_destroy_fn)(linattn_stream_t stream);
typedef const char *(*cuda_error_text_fn)(int error);
typedef int (*cuda_begin_capture_fn)(linattn_stream_t stream, int mode);
typedef int (*cuda_end_capture_fn)(linattn_stream_t stream, void **graph);
typedef int (*cuda_graph_nodes_fn)(void *graph, void **nodes, size_t *num_nodes);
typedef int (*cuda_graph_instantiate_fn)(void **graph_exec, void *graph, unsigned long long flags);
typedef int (*cuda_graph_launch_fn)(void *graph_exec, linattn_stream_t stream);
typedef int (*cuda_graph_exec_destroy_fn)(void *graph_exec);
typedef int (*cuda_graph_destroy_fn)(void *graph);

/* Values from the CUDA runtime's driver_types.h. */
enum {
    CUDA_MEMCPY_HOST_TO_DEVICE = 1,
    CUDA_MEMCPY_DEVICE_TO_HOST = 2,
    CUDA_STREAM_NON_BLOCKING = 1,
    CUDA_STREAM_CAPTURE_MODE_GLOBAL = 0
};

static struct {
    int on_device;
    int has_graphs;
    cuda_malloc_fn malloc_;
    cuda_free_fn free_;
    cuda_memcpy_async_fn memcpy_async;
    cuda_stream_sync_fn stream_sync;
    cuda_stream_create_fn stream_create;
    cuda_stream_destroy_fn stream_destroy;
    cuda_error_text_fn error_name, error_string; /* optional: messages only */
    cuda_begin_capture_fn begin_capture;
    cuda_end_capture_fn end_capture;
    cuda_graph_nodes_fn graph_nodes;
    cuda_graph_instantiate_fn graph_instantiate;
    cuda_graph_launch_fn graph_launch;
    cuda_graph_exec_destroy_fn graph_exec_destroy;
    cuda_graph_destroy_fn graph_destroy;
} cuda;

struct devmem_graph {
    void *exec; /* cudaGraphExec_t */
};

static _Thread_local char last_error[256];

const char *devmem_last_error(void)
{
    return last_error;
}

/* Records a failed CUDA call (status != 0) for devmem_last_error; returns 0 on success, -1 on failure. */
static int cuda_check(int status, const char *call)
{
    if (status == 0) return 0;
    const char *name = cuda.error_name ? cuda.error_name(status) : NULL;
    const char *text = cuda.error_string ? cuda.error_string(status) : NULL;
    snprintf(last_error, sizeof last_error, "%s returned %d (%s: %s)", call, status, name ? name : "?",
             text ? text : "?");
    return -1;
}

/* dlsym returns void *; converting it to a function pointer goes through memcpy to stay ISO C. */
static int resolve(void *library, const char *name, void *function_pointer, size_t size)
{
    void *symbol = dlsym(library, name);
    if (!symbol) return -1;
    memcpy(function_pointer, &symbol, size);
    return 0;
}

/* The graph entry points; their absence only makes devmem_graphs_available() false. cudaGraphInstantiate has the
 * flags signature from CUDA 12 on; cudaGraphInstantiateWithFlags has it since 11.4, so it is preferred. */
static void resolve_graph_calls(void *library)
{
    int failed = resolve(library, "cudaStreamBeginCapture", &cuda.begin_capture, sizeof cuda.begin_capture) |
                 resolve(library, "cudaStreamEndCapture", &cuda.end_capture, sizeof cuda.end_capture) |
                 resolve(library, "cudaGraphGetNodes", &cuda.graph_nodes, sizeof cuda.graph_nodes) |
                 resolve(library, "cudaGraphLaunch", &cuda.graph_launch, sizeof cuda.graph_launch) |
                 resolve(library, "cudaGraphExecDestroy", &cuda.graph_exec_destroy, sizeof cuda.graph_exec_destroy) |
                 resolve(library, "cudaGraphDestroy", &cuda.graph_destroy, sizeof cuda.graph_destroy);
    if (resolve(library, "cudaGraphInstantiateWithFlags", &cuda.graph_instantiate, sizeof cuda.graph_instantiate))
        failed |= resolve(library, "cudaGraphInstantiate", &cuda.graph_instantiate, sizeof cuda.graph_instantiate);
    cuda.has_graphs = !failed;
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
    resolve(library, "cudaGetErrorName", &cuda.error_name, sizeof cuda.error_name);
    resolve(library, "cudaGetErrorString", &cuda.error_string, sizeof cuda.error_string);
    resolve_graph_calls(library);
    cuda.on_device = 1;
    return 0;
}

void *devmem_alloc(size_t bytes)
{
    if (!cuda.on_device) return malloc(bytes ? bytes : 1);
    void *pointer = NULL;
    return cuda_check(cuda.malloc_(&pointer, bytes ? bytes : 1), "cudaMalloc") == 0 ? pointer : NULL;
}

void devmem_free(void *pointer)
{
    if (!cuda.on_device)
        free(pointer);
    else if (pointer)
        cuda_check(cuda.free_(pointer), "cudaFree");
}

static int copy(void *dst, const void *src, size_t bytes, int kind, linattn_stream_t stream)
{
    if (!cuda.on_device) {
        if (bytes) memcpy(dst, src, bytes);
        return 0;
    }
    if (cuda_check(cuda.memcpy_async(dst, src, bytes, kind, stream), "cudaMemcpyAsync") != 0) return -1;
    return cuda_check(cuda.stream_sync(stream), "cudaStreamSynchronize");
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
    return cuda_check(cuda.stream_create(stream, CUDA_STREAM_NON_BLOCKING), "cudaStreamCreateWithFlags");
}

void devmem_stream_destroy(linattn_stream_t stream)
{
    if (cuda.on_device && stream) cuda_check(cuda.stream_destroy(stream), "cudaStreamDestroy");
}

/* ---- CUDA graphs ---- */

int devmem_graphs_available(void)
{
    return cuda.on_device && cuda.has_graphs;
}

int devmem_capture_begin(linattn_stream_t stream)
{
    if (!devmem_graphs_available()) {
        snprintf(last_error, sizeof last_error, "CUDA graphs need the CUDA backend and libcudart's graph calls");
        return -1;
    }
    return cuda_check(cuda.begin_capture(stream, CUDA_STREAM_CAPTURE_MODE_GLOBAL), "cudaStreamBeginCapture");
}

/* Instantiates `graph` (which the caller still owns). */
static int instantiate(void *graph, devmem_graph **out_graph)
{
    devmem_graph *result = malloc(sizeof *result);
    if (!result) {
        snprintf(last_error, sizeof last_error, "out of host memory");
        return -1;
    }
    result->exec = NULL;
    if (cuda_check(cuda.graph_instantiate(&result->exec, graph, 0), "cudaGraphInstantiate") != 0) {
        free(result);
        return -1;
    }
    *out_graph = result;
    return 0;
}

int devmem_capture_end(linattn_stream_t stream, devmem_graph **out_graph, size_t *out_nodes)
{
    *out_graph = NULL;
    *out_nodes = 0;
    if (!devmem_graphs_available()) {
        snprintf(last_error, sizeof last_error, "CUDA graphs need the CUDA backend and libcudart's graph calls");
        return -1;
    }
    void *graph = NULL;
    if (cuda_check(cuda.end_capture(stream, &graph), "cudaStreamEndCapture") != 0) {
        /* An invalidated capture may still hand back a graph; it is of no use. */
        if (graph) cuda.graph_destroy(graph);
        return -1;
    }
    if (!graph) {
        snprintf(last_error, sizeof last_error, "cudaStreamEndCapture succeeded but returned no graph");
        return -1;
    }
    int failed = cuda_check(cuda.graph_nodes(graph, NULL, out_nodes), "cudaGraphGetNodes") != 0 ||
                 instantiate(graph, out_graph) != 0;
    /* The executable graph does not depend on the graph it was made from. After a failure the first error is the
     * one kept for devmem_last_error. */
    if (failed) {
        cuda.graph_destroy(graph);
        return -1;
    }
    if (cuda_check(cuda.graph_destroy(graph), "cudaGraphDestroy") != 0) {
        devmem_graph_destroy(*out_graph);
        *out_graph = NULL;
        return -1;
    }
    return 0;
}

int devmem_graph_launch(devmem_graph *graph, linattn_stream_t stream)
{
    if (!devmem_graphs_available() || !graph) {
        snprintf(last_error, sizeof last_error, "no graph to launch");
        return -1;
    }
    if (cuda_check(cuda.graph_launch(graph->exec, stream), "cudaGraphLaunch") != 0) return -1;
    return cuda_check(cuda.stream_sync(stream), "cudaStreamSynchronize after cudaGraphLaunch");
}

void devmem_graph_destroy(devmem_graph *graph)
{
    if (!graph) return;
    if (cuda.on_device && cuda.has_graphs) cuda_check(cuda.graph_exec_destroy(graph->exec), "cudaGraphExecDestroy");
    free(graph);
}
