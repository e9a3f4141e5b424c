// Compiled as C++17 with only abi/ on the include path: hosts written in C++ include the header unchanged. The
// entry point must keep C linkage and match linattn_get_api_fn.
#include "linattn.h"

#include <type_traits>

static_assert(std::is_same<decltype(&linattn_get_api), linattn_get_api_fn>::value,
              "linattn_get_api does not match linattn_get_api_fn");
static_assert(std::is_standard_layout<linattn_api>::value, "the function table must be a plain C struct");

extern "C" const linattn_get_api_fn linattn_header_check_entry_cxx = linattn_get_api;
