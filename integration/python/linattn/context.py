"""Context: one backend instance (CPU reference or one CUDA device) owning layers, pools and plans."""
import ctypes

from . import _abi
from ._library import Library, default_library


def choice(table, value, what):
    """ABI enum value for a name of `table`; ints pass through unchecked so the library's own validation (and its
    status) stays reachable."""
    if isinstance(value, bool):
        raise TypeError(f"{what} must be one of {sorted(table)}, got a bool")
    if isinstance(value, int):
        return value
    try:
        return table[value]
    except (KeyError, TypeError):
        raise ValueError(f"{what} must be one of {sorted(table)}, got {value!r}") from None


def name_of(table, value):
    for name, number in table.items():
        if number == value:
            return name
    return value


def _names_of_bits(table, bits):
    return [name for name, number in table.items() if bits & (1 << number)]


class Context:
    """Context(lib=None, backend="auto"|"cpu"|"cuda", device=0).

    lib is a Library, a path to liblinattn.so, or None (linattn.default_library()). Closing the context destroys
    everything made from it; use it as a context manager or call close().
    """

    def __init__(self, lib=None, backend="auto", device=0):
        if isinstance(lib, Library):
            self.lib = lib
        else:
            self.lib = default_library() if lib is None else Library(lib)
        self._handle = None
        desc = _abi.sized(
            _abi.ContextDesc, backend=choice(_abi.BACKENDS, backend, "backend"), device_ordinal=int(device)
        )
        handle = ctypes.c_void_p()
        self.lib.call("context_create", ctypes.byref(desc), ctypes.byref(handle))
        self._handle = handle.value
        caps = self.capabilities()
        self.backend = caps["backend"]
        self.device = int(device)
        self.checkpoint_alignment = caps["checkpoint_alignment"]

    @property
    def closed(self):
        return self._handle is None

    @property
    def handle(self):
        if self._handle is None:
            raise ValueError("the linattn Context is closed")
        return self._handle

    @property
    def device_index(self):
        """The CUDA device of this context, or None on the CPU backend."""
        return self.device if self.backend == "cuda" else None

    def capabilities(self):
        caps = _abi.sized(_abi.Capabilities)
        self.lib.call("query_capabilities", self.handle, ctypes.byref(caps))
        return {
            "backend": name_of(_abi.BACKENDS, caps.backend),
            "layer_kinds": _names_of_bits(_abi.LAYER_KINDS, caps.layer_kinds),
            "state_dtypes": _names_of_bits(_abi.DTYPES, caps.state_dtypes),
            "max_draft_tokens": caps.max_draft_tokens,
            "checkpoint_alignment": caps.checkpoint_alignment,
            "abi_version": (caps.abi_major, caps.abi_minor),
            "library_version": (caps.version_major, caps.version_minor, caps.version_patch),
            "device_name": caps.device_name.decode(errors="replace"),
        }

    def stats(self):
        stats = _abi.sized(_abi.Stats)
        self.lib.call("get_stats", self.handle, ctypes.byref(stats))
        return {name: getattr(stats, name) for name, _ in _abi.Stats._fields_[1:]}

    def close(self):
        """Destroy the context and every layer, pool and plan made from it (synchronises the device)."""
        if self._handle is not None:
            handle, self._handle = self._handle, None
            self.lib.call("context_destroy", handle)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown or an already broken library: nothing left to do
            pass

    def __repr__(self):
        state = "closed" if self.closed else f"{self.backend}:{self.device}"
        return f"<linattn.Context {state}>"


class Owned:
    """An object made from a context: its handle dies with the context or with its own close()."""

    _destroy_entry = None

    def __init__(self, context):
        self.context = context
        self._handle = None

    @property
    def closed(self):
        return self._handle is None or self.context.closed

    @property
    def handle(self):
        if self._handle is None:
            raise ValueError(f"this linattn {type(self).__name__} is closed")
        if self.context.closed:
            raise ValueError(f"the Context of this linattn {type(self).__name__} is closed")
        return self._handle

    def close(self):
        if self._handle is not None and not self.context.closed:
            self.context.lib.call(self._destroy_entry, self._handle)
        self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # e.g. LINATTN_ERR_IN_USE: the context frees it when it is destroyed
            pass
