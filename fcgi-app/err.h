/* One return-code enum for every function that can fail; results travel
 * through out-parameters. */
#ifndef ARS_ERR_H
#define ARS_ERR_H

enum ars_err {
    ARS_OK = 0,
    ARS_ERR_NOMEM,        /* allocation failed */
    ARS_ERR_TOOBIG,       /* a size cap was exceeded */
    ARS_ERR_INVALID,      /* malformed input */
    ARS_ERR_IO,           /* read/write failed */
    ARS_ERR_CLIENT_GONE,  /* the client closed its side */
    ARS_ERR_TIMEOUT,      /* a deadline passed */
    ARS_ERR_UNAVAILABLE,  /* a store or upstream cannot be reached */
    ARS_ERR_NOTFOUND,
    ARS_ERR_CONFIG        /* configuration rejected */
};

const char *ars_err_str(enum ars_err err);

/* Every function that returns enum ars_err is declared with this: a caller
 * that drops the result drops a failure (a lease not released, half a
 * string sent). GCC does not take a (void) cast as a use: a result that
 * truly does not matter goes through ars_ignore(), next to a comment that
 * says why. */
#define ARS_MUST_USE __attribute__((warn_unused_result))

static inline void ars_ignore(enum ars_err err)
{
    (void)err;
}

#endif
