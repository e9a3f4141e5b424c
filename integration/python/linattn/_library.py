"""Loading liblinattn.so, negotiating the ABI through linattn_get_api, and turning statuses into exceptions."""
import ctypes
import os
from pathlib import Path

from . import _abi

LIBRARY_ENV = "LINATTN_LIBRARY"
LIBRARY_NAME = "liblinattn.so"


class LinattnError(RuntimeError):
    """A call into liblinattn returned a non-zero linattn_status.

    status: the numeric status; name: its name without the LINATTN_ prefix (e.g. "ERR_SLOT_CONFLICT");
    message: the library's last_error_message for the failed call; call: the table entry that failed.
    """

    def __init__(self, status, message, call=None):
        self.status = int(status)
        self.name = _abi.STATUS_NAMES.get(self.status, f"status {self.status}")
        self.message = message
        self.call = call
        where = f"{call}: " if call else ""
        super().__init__(f"{where}LINATTN_{self.name}: {message}")


def _repository_build_library():
    # The package lives at <repo>/integration/python/linattn; CMake's default build tree is <repo>/build.
    return Path(__file__).resolve().parents[3] / "build" / LIBRARY_NAME


def find_library(path=None):
    """The library file to load: `path`, else $LINATTN_LIBRARY, else <repo>/build/liblinattn.so."""
    if path is not None:
        return Path(path)
    from_env = os.environ.get(LIBRARY_ENV)
    if from_env:
        return Path(from_env)
    candidate = _repository_build_library()
    if candidate.is_file():
        return candidate
    raise FileNotFoundError(
        f"liblinattn not found: pass Library(path), set ${LIBRARY_ENV}, or build it into {candidate.parent}"
    )


class Library:
    """One loaded liblinattn and its negotiated ABI 1.x function table.

    Library(path=None): path as for find_library. `abi_version` is the (major, minor) the host asks for; this
    binding mirrors the 1.0 table, so only (1, 0) yields a usable object (others are for negotiation tests).
    """

    def __init__(self, path=None, abi_version=(_abi.ABI_VERSION_MAJOR, _abi.ABI_VERSION_MINOR)):
        self.path = find_library(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"liblinattn not found at {self.path}")
        self._dll = ctypes.CDLL(str(self.path))
        get_api = _abi.GET_API(("linattn_get_api", self._dll))
        major, minor = abi_version
        table_ptr = ctypes.POINTER(_abi.ApiTable)()
        status = get_api(major, minor, ctypes.byref(table_ptr))
        if status != 0:
            raise LinattnError(status, self._refusal_message(get_api), "linattn_get_api")
        table = table_ptr.contents
        if table.struct_size < ctypes.sizeof(_abi.ApiTable):
            raise LinattnError(
                2,
                f"the library's function table has {table.struct_size} bytes, ABI 1.0 needs "
                f"{ctypes.sizeof(_abi.ApiTable)}",
                "linattn_get_api",
            )
        if table.abi_major != major or table.abi_minor < minor:
            raise LinattnError(
                3,
                f"asked for ABI {major}.{minor}, the table says {table.abi_major}.{table.abi_minor}",
                "linattn_get_api",
            )
        self._table = table
        self._entries = {name: getattr(table, name) for name, _ in _abi.ApiTable._fields_[3:]}
        self.abi_version = (table.abi_major, table.abi_minor)
        self.table_size = table.struct_size
        self.version = table.version_string().decode()

    @staticmethod
    def _refusal_message(get_api):
        # The entry point has no message channel of its own; the refusal's message is in the thread-local
        # last_error_message, reachable through a table of the major this binding knows. A successful
        # linattn_get_api does not overwrite it.
        table_ptr = ctypes.POINTER(_abi.ApiTable)()
        if get_api(_abi.ABI_VERSION_MAJOR, 0, ctypes.byref(table_ptr)) != 0:
            return "(the library refused ABI 1.0 too; no message available)"
        return table_ptr.contents.last_error_message().decode(errors="replace")

    def last_error_message(self):
        return self._entries["last_error_message"]().decode(errors="replace")

    def call(self, entry, *args):
        """Call a table entry by name; raise LinattnError on a non-zero status."""
        status = self._entries[entry](*args)
        if status != 0:
            raise LinattnError(status, self.last_error_message(), entry)

    def status_of(self, entry, *args):
        """Call a table entry by name and return its raw status (no exception)."""
        return self._entries[entry](*args)

    def __repr__(self):
        major, minor = self.abi_version
        return f"<linattn.Library {self.version!r} ABI {major}.{minor} from {self.path}>"


_default_library = None


def default_library():
    """A process-wide Library loaded from find_library() on first use."""
    global _default_library
    if _default_library is None:
        _default_library = Library()
    return _default_library
