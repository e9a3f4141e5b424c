/*
 * devmem.h — "device" memory for the integration programs, as the ABI defines it: host memory for a context on the
 * CPU backend, CUDA device memory for a context on a CUDA device. The CUDA side dlopens libcudart at run time, so
 * the program needs no CUDA header or link dependency and runs unchanged on machines without CUDA.
 */
#ifndef LINATTN_INTEGRATION_DEVMEM_H
#define LINATTN_INTEGRATION_DEVMEM_H

#include <stddef.h>

#include "abi/linattn.h"

/* Choose host or CUDA memory. Call once, before any other devmem function and before threads start.
 * Returns 0, or -1 with a reason in `why` when CUDA memory is needed but libcudart cannot be loaded. */
int devmem_setup(linattn_backend_kind backend, char *why, size_t why_len);

void *devmem_alloc(size_t bytes);
void devmem_free(void *pointer);
/* Copies ordered on `stream`; both return after the copy completed. 0 on success. */
int devmem_upload(void *device_dst, const void *host_src, size_t bytes, linattn_stream_t stream);
int devmem_download(void *host_dst, const void *device_src, size_t bytes, linattn_stream_t stream);
/* A stream of its own for a thread (NULL, the default stream, on the CPU backend). 0 on success. */
int devmem_stream_create(linattn_stream_t *stream);
void devmem_stream_destroy(linattn_stream_t stream);

/* ---- CUDA graphs (CUDA memory only) ---- */

/* An instantiated graph (cudaGraphExec_t) captured from a stream. */
typedef struct devmem_graph devmem_graph;

/* Nonzero when CUDA memory is in use and libcudart has the graph entry points. */
int devmem_graphs_available(void);
/* Start capturing `stream` (a stream of devmem_stream_create, not the default stream) in the global mode, so a
 * call that is not capturable (a synchronisation, an allocation) invalidates the capture. 0 on success. */
int devmem_capture_begin(linattn_stream_t stream);
/* Stop capturing `stream` (always, so the stream is usable again even after an error) and instantiate what was
 * captured. 0 with *out_graph set, or -1 with *out_graph NULL. *out_nodes receives the number of nodes captured. */
int devmem_capture_end(linattn_stream_t stream, devmem_graph **out_graph, size_t *out_nodes);
/* Launch the graph on `stream` and wait for it. 0 on success. */
int devmem_graph_launch(devmem_graph *graph, linattn_stream_t stream);
void devmem_graph_destroy(devmem_graph *graph);

/* What the last failed devmem call of this thread was, with CUDA's error name and string ("" if none). */
const char *devmem_last_error(void);

#endif
