/*
 * sm_count.h — the current device's SM count for launch decisions of the CUDA kernels (C++ only). Queried once per
 * device and cached: a launch decision must not cost a driver call each time. Thread-safe.
 */
#ifndef LINATTN_KERNELS_CUDA_SM_COUNT_H
#define LINATTN_KERNELS_CUDA_SM_COUNT_H

#include <atomic>
#include <cuda_runtime.h>

inline cudaError_t la_cuda_sm_count(int *count)
{
    constexpr int kCachedDevices = 64;
    static std::atomic<int> cached[kCachedDevices];
    int device = 0;
    cudaError_t err = cudaGetDevice(&device);
    if (err != cudaSuccess) return err;
    if (device < kCachedDevices && (*count = cached[device].load(std::memory_order_relaxed)) > 0) return cudaSuccess;
    err = cudaDeviceGetAttribute(count, cudaDevAttrMultiProcessorCount, device);
    if (err == cudaSuccess && device < kCachedDevices) cached[device].store(*count, std::memory_order_relaxed);
    return err;
}

#endif
