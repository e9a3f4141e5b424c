/* Compiled as C11 with only abi/ on the include path: the public header must be self-contained. Taking the entry
 * point through its typedef checks that the declaration and linattn_get_api_fn agree. */
#include "linattn.h"

const linattn_get_api_fn linattn_header_check_entry = linattn_get_api;
