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

#endif
