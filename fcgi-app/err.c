#include "err.h"

const char *ars_err_str(enum ars_err err)
{
    switch (err) {
    case ARS_OK: return "ok";
    case ARS_ERR_NOMEM: return "out of memory";
    case ARS_ERR_TOOBIG: return "too big";
    case ARS_ERR_INVALID: return "invalid";
    case ARS_ERR_IO: return "I/O error";
    case ARS_ERR_CLIENT_GONE: return "client gone";
    case ARS_ERR_TIMEOUT: return "timed out";
    case ARS_ERR_UNAVAILABLE: return "unavailable";
    case ARS_ERR_NOTFOUND: return "not found";
    case ARS_ERR_CONFIG: return "configuration error";
    }
    return "unknown error";
}
