/* Every size a client or an upstream controls has its cap here. */
#ifndef ARS_CAPS_H
#define ARS_CAPS_H

#define ARS_CAP_PARAMS            256      /* FastCGI params (headers) per request */
#define ARS_CAP_QUERY_PARAMS      64       /* query-string pairs kept */
#define ARS_CAP_PATH_BYTES        4096     /* request path */
#define ARS_CAP_QUERY_BYTES       8192     /* raw query string */
/* One header value. nginx's large_client_header_buffers (4 x 8k) and
 * lighttpd's 8 KiB request-header default refuse longer lines before we
 * see them; a direct FastCGI client is held to the same. Over: 431. */
#define ARS_CAP_HEADER_VALUE_BYTES 8192
#define ARS_CAP_ROUTE_PARAMS      8        /* :name segments in one route */
#define ARS_CAP_LOG_LINE          4096     /* one log line; longer lines are cut and marked */
#define ARS_CAP_CONFIG_LINE       4096     /* one line of the env-style config file */
#define ARS_CAP_CONFIG_FILE       (1024 * 1024)
#define ARS_CAP_HEALTH_REPLY      4096

#define ARS_REQUEST_MAX_BYTES_DEFAULT (60L * 1024 * 1024)

#endif
