/*
 * NVTX v3 ranges in the library's own domain "linattn", one per hook (e.g. "linattn/forward"), so Nsight Systems
 * shows where a host step spends its time in the library. Built out with NVTX_DISABLE, or when the NVTX headers
 * are absent; nothing the library does depends on them.
 */
#ifndef LINATTN_BACKEND_NVTX_H
#define LINATTN_BACKEND_NVTX_H

#if !defined(NVTX_DISABLE) && defined(__has_include)
#if __has_include(<nvtx3/nvToolsExt.h>)
#define LINATTN_HAVE_NVTX 1
#endif
#endif

#if LINATTN_HAVE_NVTX
/* NVTX's dlsym-to-function-pointer cast is fine on every POSIX system but not ISO C. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpedantic"
#include <nvtx3/nvToolsExt.h>
#pragma GCC diagnostic pop

nvtxDomainHandle_t linattn_nvtx_domain(void);

static inline void range_push(const char *name)
{
    nvtxEventAttributes_t attributes = {0};
    attributes.version = NVTX_VERSION;
    attributes.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
    attributes.messageType = NVTX_MESSAGE_TYPE_ASCII;
    attributes.message.ascii = name;
    nvtxDomainRangePushEx(linattn_nvtx_domain(), &attributes);
}

static inline void range_pop(void) { nvtxDomainRangePop(linattn_nvtx_domain()); }
#else
static inline void range_push(const char *name) { (void)name; }
static inline void range_pop(void) {}
#endif

#endif
