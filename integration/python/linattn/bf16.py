"""bfloat16 as raw uint16 bits in numpy (the library's activation format), round to nearest even."""
import numpy as np


def float_to_bf16_bits(values):
    """float array (any float dtype) -> uint16 array of bf16 bits, same shape; NaN stays a quiet NaN."""
    words = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    is_nan = (words & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    rounded = (words + np.uint32(0x7FFF) + ((words >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    quiet_nan = (words >> np.uint32(16)) | np.uint32(0x0040)
    return np.where(is_nan, quiet_nan, rounded).astype(np.uint16)


def bf16_bits_to_float(bits):
    """uint16 array of bf16 bits -> float32 array, same shape (exact)."""
    bits = np.asarray(bits)
    if bits.dtype != np.uint16:
        raise TypeError(f"bf16 bits must be a uint16 array, got {bits.dtype}")
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


def round_to_bf16(values):
    """Values rounded to the nearest bf16, as float32 (what the library sees of a float input)."""
    return bf16_bits_to_float(float_to_bf16_bits(values))
