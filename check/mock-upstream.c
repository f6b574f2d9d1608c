/*
 * check/mock-upstream.c - a mock of Anthropic's Messages API.
 *
 * The upstream of the integration tests and of scripts/bench. It has to be
 * cheap per request (wrk at 64 connections must measure the relay, not the
 * mock) and hold 1,000+ slow SSE streams at once, so it is a few epoll
 * event loops (one per thread, each with its own SO_REUSEPORT listener, or
 * one shared listener as a fallback) and a per-thread min-heap of timers
 * for delayed responses and events. No thread per connection.
 *
 * What a request gets is chosen by x-mock-* request headers or, for clients
 * that cannot set headers (a relay forwards only whitelisted ones), by
 * "mock-<knob>-<value>" parts of the model name; headers win. The tables
 * below (opt_defs, knob_defs, fault_defs, route_defs) drive parsing and
 * --help alike.
 *
 * A connection (struct conn) moves through enum cstate:
 *   READING    bytes in; parse_request() finds the header block, then a
 *              Content-Length or chunked body (chunked is decoded in place)
 *   WAIT       x-mock-first-byte-ms: a timer, then respond()
 *   STREAM     one SSE event per stream_step(); a timer between events
 *   HANG       fault "hang": nothing until the client leaves
 *   FINISHING  the response is queued; once flushed, the next request
 *              (keep-alive) or close
 *   LINGER     after "Connection: close": FIN sent, input discarded until
 *              the peer closes, so it reads our answer instead of an RST
 * While a response is in progress the socket is not read (no pipelining);
 * EPOLLRDHUP tells us when the client leaves.
 *
 * Counters are process-wide atomics (the only mutable globals). The last
 * request is kept per thread under a per-thread mutex, so recording it
 * costs no contention; /_mock/last-request picks the newest.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ caps */

#define MAX_HEADER_BYTES  (64u * 1024u)          /* request line + headers; over: 431 */
#define MAX_BODY_BYTES    (64u * 1024u * 1024u)  /* decoded request body; over: 413 */
#define MAX_HEADERS       128u                   /* header lines; over: 431 */
#define MAX_METHOD_LEN    32u
#define MAX_CHUNK_LINE    1024u                  /* chunk-size line incl. extensions */
#define MAX_MODEL_LEN     256u                   /* decoded "model" string */
#define MAX_TEXT_LEN      (16u * 1024u * 1024u)  /* x-mock-text-len */
#define MAX_CHUNKS        100000u                /* x-mock-chunks */
#define MAX_DELAY_MS      (3600u * 1000u)        /* x-mock-delay-ms, x-mock-first-byte-ms */
#define MAX_SECONDS       (10u * 365u * 86400u)  /* retry-after, reset-in, expires-in */
#define MAX_USAGE         1000000000000ull       /* each x-mock-usage number */
#define MAX_TOOL_NAME     64u                    /* x-mock-tool NAME, as Claude's tool names */
#define MAX_PARAM_VALUE   512u                   /* OAuth form/JSON values */
#define MAX_LAST_BODY     (256u * 1024u)         /* body bytes kept for /_mock/last-request */
#define MAX_THREADS       64u
#define DEFAULT_THREADS   4u                     /* at most this many by default */

#define READ_MIN_FREE     (16u * 1024u)          /* free space offered to each recv */
#define IN_HARD_CAP       (MAX_HEADER_BYTES + MAX_BODY_BYTES + 2u * READ_MIN_FREE)
#define BUF_KEEP          (1024u * 1024u)        /* idle buffers above this are released */
#define STREAM_BATCH      (64u * 1024u)          /* undelayed events coalesced per send */
#define LINGER_MS         2000u
#define ACCEPT_BATCH      64
#define EPOLL_BATCH       256
#define LISTEN_BACKLOG    4096

#define DEFAULT_COUNT_TOKENS 42u

#define NO_TIMER   SIZE_MAX
#define KNOB_AUTO  UINT64_MAX
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------ buffers */

/* A growable byte buffer. An append that cannot allocate sets the sticky
 * `oom` flag and is dropped; whoever sends the buffer checks the flag. */
struct buf {
	char *p;
	size_t len, cap;
	bool oom;
};

static bool buf_reserve(struct buf *b, size_t extra)
{
	size_t want, ncap;
	char *np;

	if (b->oom)
		return false;
	if (b->cap - b->len >= extra)
		return true;
	want = b->len + extra;
	if (want < b->len)
		goto fail;
	ncap = b->cap > SIZE_MAX / 2 ? SIZE_MAX : b->cap * 2;
	if (ncap < want)
		ncap = want;
	if (ncap < 256)
		ncap = 256;
	np = realloc(b->p, ncap);
	if (!np)
		goto fail;
	b->p = np;
	b->cap = ncap;
	return true;
fail:
	b->oom = true;
	return false;
}

static void buf_free(struct buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* Releases a large buffer once it is idle, so one big request does not pin
 * its memory for the life of a keep-alive connection. */
static void buf_trim(struct buf *b)
{
	char *np;

	if (b->cap <= BUF_KEEP || b->len > BUF_KEEP / 2)
		return;
	if (b->len == 0) {
		buf_free(b);
		return;
	}
	np = realloc(b->p, b->len);
	if (np) {
		b->p = np;
		b->cap = b->len;
	}
}

static void buf_add(struct buf *b, const void *d, size_t n)
{
	if (n == 0 || !buf_reserve(b, n))
		return;
	memcpy(b->p + b->len, d, n);
	b->len += n;
}

#define buf_lit(b, s) buf_add((b), (s), sizeof(s) - 1)

static void buf_adds(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

static void buf_addc(struct buf *b, char ch)
{
	buf_add(b, &ch, 1);
}

static size_t fmt_u64(char dst[20], uint64_t v)
{
	char tmp[20];
	size_t n = 0, i;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (i = 0; i < n; i++)
		dst[i] = tmp[n - 1 - i];
	return n;
}

static void buf_addu(struct buf *b, uint64_t v)
{
	char t[20];

	buf_add(b, t, fmt_u64(t, v));
}

static void buf_addhex(struct buf *b, uint64_t v)
{
	static const char hex[] = "0123456789abcdef";
	char tmp[16];
	size_t n = 0;

	do {
		tmp[15 - n++] = hex[v & 15];
		v >>= 4;
	} while (v);
	buf_add(b, tmp + 16 - n, n);
}

/* Length of a valid UTF-8 sequence at s (2-4 bytes), 0 if invalid. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	size_t len, i;

	if (c >= 0xC2 && c <= 0xDF)
		len = 2;
	else if (c >= 0xE0 && c <= 0xEF)
		len = 3;
	else if (c >= 0xF0 && c <= 0xF4)
		len = 4;
	else
		return 0;
	if (n < len)
		return 0;
	for (i = 1; i < len; i++)
		if ((s[i] & 0xC0) != 0x80)
			return 0;
	if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] > 0x9F) ||
	    (c == 0xF0 && s[1] < 0x90) || (c == 0xF4 && s[1] > 0x8F))
		return 0;
	return len;
}

/* Appends s as the inside of a JSON string. Bytes that are not valid UTF-8
 * become \u00XX, so the output is valid JSON whatever the input was. */
static void buf_add_jesc(struct buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, j, ul;
	char esc[6];

	while (i < n) {
		j = i;
		while (j < n && u[j] >= 0x20 && u[j] < 0x80 && u[j] != '"' && u[j] != '\\')
			j++;
		if (j > i) {
			buf_add(b, s + i, j - i);
			i = j;
			continue;
		}
		if (u[i] >= 0x80) {
			ul = utf8_seq_len(u + i, n - i);
			if (ul) {
				buf_add(b, s + i, ul);
				i += ul;
				continue;
			}
		}
		switch (u[i]) {
		case '"': buf_lit(b, "\\\""); break;
		case '\\': buf_lit(b, "\\\\"); break;
		case '\n': buf_lit(b, "\\n"); break;
		case '\r': buf_lit(b, "\\r"); break;
		case '\t': buf_lit(b, "\\t"); break;
		default:
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[u[i] >> 4];
			esc[5] = hex[u[i] & 15];
			buf_add(b, esc, 6);
			break;
		}
		i++;
	}
}

static void buf_add_jstr(struct buf *b, const char *s, size_t n)
{
	buf_addc(b, '"');
	buf_add_jesc(b, s, n);
	buf_addc(b, '"');
}

/* ------------------------------------------------------- small parsers */

static bool is_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static char lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c + ('a' - 'A')) : c;
}

static bool mem_ieq(const char *a, size_t alen, const char *lit)
{
	size_t i, n = strlen(lit);

	if (alen != n)
		return false;
	for (i = 0; i < n; i++)
		if (lower(a[i]) != lit[i])
			return false;
	return true;
}

static bool mem_eq(const char *a, size_t alen, const char *lit)
{
	size_t n = strlen(lit);

	return alen == n && memcmp(a, lit, n) == 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Strict decimal: digits only, no sign, no blanks, value <= max. */
static bool parse_u64(const char *s, size_t n, uint64_t max, uint64_t *out)
{
	uint64_t v = 0, d;
	size_t i;

	if (n == 0 || n > 20)
		return false;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		d = (uint64_t)(s[i] - '0');
		if (d > max || v > (max - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

enum { U_IN, U_OUT, U_C5, U_C1, U_CR, U__COUNT };

/* "I,O,C5,C1,R" (',' or '_' between, blanks allowed); fields left out keep
 * their defaults. */
static bool parse_usage(const char *s, size_t n, uint64_t usage[U__COUNT])
{
	uint64_t v[U__COUNT];
	size_t i = 0, field = 0, start;

	memcpy(v, usage, sizeof(v));
	for (;;) {
		while (i < n && s[i] == ' ')
			i++;
		start = i;
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
		if (field == U__COUNT || !parse_u64(s + start, i - start, MAX_USAGE, &v[field]))
			return false;
		field++;
		while (i < n && s[i] == ' ')
			i++;
		if (i == n)
			break;
		if (s[i] != ',' && s[i] != '_')
			return false;
		i++;
	}
	memcpy(usage, v, sizeof(v));
	return true;
}

static size_t skip_ws(const char *s, size_t n, size_t i)
{
	while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
		i++;
	return i;
}

/* Finds the closing quote of a JSON string whose contents start at `start`;
 * memchr keeps this fast on large message bodies, which are mostly strings. */
static bool json_str_end(const char *s, size_t n, size_t start, size_t *end)
{
	const char *q;
	size_t j = start, pos, bs;

	while (j < n) {
		q = memchr(s + j, '"', n - j);
		if (!q)
			return false;
		pos = (size_t)(q - s);
		bs = 0;
		while (pos - bs > start && s[pos - bs - 1] == '\\')
			bs++;
		if (bs % 2 == 0) {
			*end = pos;
			return true;
		}
		j = pos + 1;
	}
	return false;
}

struct jfield {
	const char *key;
	const char *val;   /* string contents (escapes intact) or literal token */
	size_t val_len;
	bool found, is_str;
};

/* The "tiny string scanner": finds top-level members of a JSON object by
 * name without parsing the rest (nested members of the same name are not
 * matched). Returns false if the text is not an object or a string is
 * unterminated. Bounded by n, no recursion. */
static bool json_scan_top(const char *s, size_t n, struct jfield *f, size_t nf)
{
	size_t i = skip_ws(s, n, 0), start, end, k, j, e, left = nf;
	long depth = 0;
	struct jfield *hit;

	if (i >= n || s[i] != '{')
		return false;
	while (i < n) {
		if (s[i] == '"') {
			start = i + 1;
			if (!json_str_end(s, n, start, &end))
				return false;
			i = end + 1;
			if (depth != 1)
				continue;
			k = skip_ws(s, n, i);
			if (k >= n || s[k] != ':')
				continue;
			i = k + 1;
			hit = NULL;
			for (j = 0; j < nf; j++) {
				if (!f[j].found && mem_eq(s + start, end - start, f[j].key)) {
					hit = &f[j];
					break;
				}
			}
			if (!hit)
				continue;
			k = skip_ws(s, n, i);
			if (k >= n)
				return false;
			if (s[k] == '"') {
				if (!json_str_end(s, n, k + 1, &e))
					return false;
				hit->val = s + k + 1;
				hit->val_len = e - (k + 1);
				hit->is_str = true;
				i = e + 1;
			} else {
				e = k;
				while (e < n && s[e] && !strchr(",}] \t\r\n{[", s[e]))
					e++;
				hit->val = s + k;
				hit->val_len = e - k;
				hit->is_str = false;
				i = e;
			}
			hit->found = true;
			if (--left == 0)
				return true;
			continue;
		}
		if (s[i] == '{' || s[i] == '[') {
			depth++;
		} else if (s[i] == '}' || s[i] == ']') {
			if (--depth <= 0)
				break;
		}
		i++;
	}
	return true;
}

static bool hex4(const char *s, size_t n, size_t *i, uint32_t *cp)
{
	uint32_t v = 0;
	size_t k;
	int h;

	if (n - *i < 4 || *i > n)
		return false;
	for (k = 0; k < 4; k++) {
		h = hexval(s[*i + k]);
		if (h < 0)
			return false;
		v = v * 16 + (uint32_t)h;
	}
	*i += 4;
	*cp = v;
	return true;
}

static size_t utf8_put(char out[4], uint32_t cp)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xC0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xE0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		out[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (char)(0xF0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	out[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

/* Decodes the contents of a JSON string into dst (not NUL-terminated).
 * False if malformed or longer than cap. */
static bool json_unescape(const char *s, size_t n, char *dst, size_t cap, size_t *out)
{
	size_t i = 0, o = 0, j, ul;
	uint32_t cp, lo;
	char u[4], e;

	while (i < n) {
		if (s[i] != '\\') {
			if (o >= cap)
				return false;
			dst[o++] = s[i++];
			continue;
		}
		if (++i >= n)
			return false;
		e = s[i++];
		switch (e) {
		case '"': case '\\': case '/': cp = (unsigned char)e; break;
		case 'b': cp = '\b'; break;
		case 'f': cp = '\f'; break;
		case 'n': cp = '\n'; break;
		case 'r': cp = '\r'; break;
		case 't': cp = '\t'; break;
		case 'u':
			if (!hex4(s, n, &i, &cp))
				return false;
			if (cp >= 0xD800 && cp <= 0xDBFF) {
				j = i + 2;
				if (i + 1 < n && s[i] == '\\' && s[i + 1] == 'u' &&
				    hex4(s, n, &j, &lo) && lo >= 0xDC00 && lo <= 0xDFFF) {
					cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
					i = j;
				} else {
					cp = 0xFFFD;
				}
			} else if (cp >= 0xDC00 && cp <= 0xDFFF) {
				cp = 0xFFFD;
			}
			break;
		default:
			return false;
		}
		ul = utf8_put(u, cp);
		if (cap - o < ul)
			return false;
		memcpy(dst + o, u, ul);
		o += ul;
	}
	*out = o;
	return true;
}

/* application/x-www-form-urlencoded value decoding. */
static bool url_decode(const char *s, size_t n, char *dst, size_t cap, size_t *out)
{
	size_t i, o = 0;
	int hi, lo;

	for (i = 0; i < n; i++) {
		char c = s[i];

		if (c == '+') {
			c = ' ';
		} else if (c == '%' && i + 2 < n && (hi = hexval(s[i + 1])) >= 0 &&
			   (lo = hexval(s[i + 2])) >= 0) {
			c = (char)(hi * 16 + lo);
			i += 2;
		}
		if (o >= cap)
			return false;
		dst[o++] = c;
	}
	*out = o;
	return true;
}

/* -------------------------------------------------------------- tables */

enum fault {
	F_NONE, F_429, F_429_NOHEADERS, F_429_RETRY_AFTER, F_429_RESET,
	F_400, F_401, F_403, F_500, F_503, F_529,
	F_DISCONNECT, F_DISCONNECT_MID, F_ERROR_MID, F_HANG,
	F__COUNT
};

#define FF_RETRY_AFTER 1u   /* 429 carries retry-after */
#define FF_RESET       2u   /* 429 carries anthropic-ratelimit-unified-reset */

struct fault_def {
	const char *name;
	unsigned status;        /* 0: not a plain error reply */
	const char *type, *message;
	unsigned flags;
	const char *help;
};

static const struct fault_def fault_defs[F__COUNT] = {
	[F_NONE] = { "none", 0, NULL, NULL, 0,
		"no fault (a header 'none' overrides a fault in the model name)" },
	[F_429] = { "429", 429, "rate_limit_error",
		"This request would exceed your account's rate limit. Please try again later. (mock)",
		FF_RETRY_AFTER | FF_RESET,
		"429 rate_limit_error + retry-after + anthropic-ratelimit-unified-reset/-status" },
	[F_429_NOHEADERS] = { "429-noheaders", 429, "rate_limit_error",
		"This request would exceed your account's rate limit. Please try again later. (mock)",
		0, "429 rate_limit_error without retry/reset headers" },
	[F_429_RETRY_AFTER] = { "429-retry-after", 429, "rate_limit_error",
		"This request would exceed your account's rate limit. Please try again later. (mock)",
		FF_RETRY_AFTER, "429 with retry-after only" },
	[F_429_RESET] = { "429-reset", 429, "rate_limit_error",
		"This request would exceed your account's rate limit. Please try again later. (mock)",
		FF_RESET, "429 with anthropic-ratelimit-unified-reset only" },
	[F_400] = { "400", 400, "invalid_request_error", "Invalid request (mock)", 0,
		"400 invalid_request_error" },
	[F_401] = { "401", 401, "authentication_error", "invalid x-api-key (mock)", 0,
		"401 authentication_error" },
	[F_403] = { "403", 403, "permission_error",
		"Your API key does not have permission to use the specified resource. (mock)", 0,
		"403 permission_error" },
	[F_500] = { "500", 500, "api_error", "Internal server error (mock)", 0,
		"500 api_error" },
	[F_503] = { "503", 503, "api_error", "Service unavailable (mock)", 0,
		"503 api_error" },
	[F_529] = { "529", 529, "overloaded_error", "Overloaded (mock)", 0,
		"529 overloaded_error" },
	[F_DISCONNECT] = { "disconnect", 0, NULL, NULL, 0,
		"close the connection without any response" },
	[F_DISCONNECT_MID] = { "disconnect-mid-stream", 0, NULL, NULL, 0,
		"stream: message_start .. some deltas, then close (no message_delta); "
		"JSON: headers + half the body, then close" },
	[F_ERROR_MID] = { "error-mid-stream", 0, "overloaded_error", "Overloaded (mock)", 0,
		"stream: some deltas, then event: error (overloaded_error) and the end of "
		"the body; JSON: 529 overloaded_error" },
	[F_HANG] = { "hang", 0, NULL, NULL, 0,
		"never answer (the connection is closed when the client leaves)" },
};

struct knobs {
	uint64_t text_len, chunks, delay_ms, first_byte_ms;
	uint64_t retry_after, reset_in, fault_after, expires_in;
	uint64_t force_stream, no_usage;
	uint64_t usage[U__COUNT];
	bool usage_set;
	enum fault fault;
	size_t tool_len;        /* x-mock-tool: 0 none */
	char tool[MAX_TOOL_NAME];
};

struct knob_def {
	const char *header;     /* model-name form: the same without "x-" */
	size_t off;
	uint64_t def, max;
	const char *help;
};

static const struct knob_def knob_defs[] = {
	{ "x-mock-text-len", offsetof(struct knobs, text_len), 20, MAX_TEXT_LEN,
		"characters of generated text" },
	{ "x-mock-chunks", offsetof(struct knobs, chunks), 3, MAX_CHUNKS,
		"content_block_delta events in a stream" },
	{ "x-mock-delay-ms", offsetof(struct knobs, delay_ms), 0, MAX_DELAY_MS,
		"delay between stream events" },
	{ "x-mock-first-byte-ms", offsetof(struct knobs, first_byte_ms), 0, MAX_DELAY_MS,
		"delay before the response headers (any /v1 route)" },
	{ "x-mock-retry-after", offsetof(struct knobs, retry_after), 30, MAX_SECONDS,
		"retry-after seconds on a 429 fault" },
	{ "x-mock-reset-in", offsetof(struct knobs, reset_in), 60, MAX_SECONDS,
		"anthropic-ratelimit-unified-reset = now + this many seconds" },
	{ "x-mock-fault-after", offsetof(struct knobs, fault_after), KNOB_AUTO, MAX_CHUNKS,
		"text deltas sent before a mid-stream fault (default: half, rounded up)" },
	{ "x-mock-expires-in", offsetof(struct knobs, expires_in), 3600, MAX_SECONDS,
		"expires_in of /v1/oauth/token" },
	{ "x-mock-force-stream", offsetof(struct knobs, force_stream), 0, 1,
		"1: answer /v1/messages as a stream (SSE) even without \"stream\":true" },
	{ "x-mock-no-usage", offsetof(struct knobs, no_usage), 0, 1,
		"1: a JSON message answer carries \"usage\":null" },
};

enum route {
	R_MESSAGES, R_COUNT_TOKENS, R_MODELS, R_OAUTH,
	R_STATS, R_RESET, R_LAST, R_NOT_FOUND, R_BAD
};

enum stat_id {
	S_REQUESTS,
	S_R_MESSAGES, S_R_MESSAGES_STREAM, S_R_COUNT_TOKENS, S_R_MODELS, S_R_OAUTH,
	S_R_NOT_FOUND, S_R_BAD_REQUEST, S_R_TOO_LARGE,
	S_TOKENS_ISSUED, S_MESSAGES_COMPLETED, S_STREAMS_COMPLETED,
	S_U_INPUT, S_U_OUTPUT, S_U_CACHE5M, S_U_CACHE1H, S_U_CACHE_READ,
	S__COUNT
};

#define RF_V1     1u   /* knobs and faults apply */
#define RF_BODY   2u   /* the body carries "model" (and "stream") */
#define RF_RECORD 4u   /* counted in requests_total, kept as the last request */

struct route_def {
	const char *method, *path;
	enum route route;
	enum stat_id stat;   /* S__COUNT: none */
	unsigned flags;
	const char *help;
};

static const struct route_def route_defs[] = {
	{ "POST", "/v1/messages", R_MESSAGES, S_R_MESSAGES, RF_V1 | RF_BODY | RF_RECORD,
		"Messages; JSON, or SSE when \"stream\":true (query string ignored)" },
	{ "POST", "/v1/messages/count_tokens", R_COUNT_TOKENS, S_R_COUNT_TOKENS,
		RF_V1 | RF_BODY | RF_RECORD, "{\"input_tokens\":42}, or I of x-mock-usage" },
	{ "GET", "/v1/models", R_MODELS, S_R_MODELS, RF_V1 | RF_RECORD,
		"a small model list" },
	{ "POST", "/v1/oauth/token", R_OAUTH, S_R_OAUTH, RF_V1 | RF_RECORD,
		"OAuth refresh_token (or authorization_code) grant, form or JSON body; "
		"refresh_token \"invalid\" -> 400 invalid_grant" },
	{ "GET", "/_mock/stats", R_STATS, S__COUNT, 0, "counters as JSON" },
	{ "POST", "/_mock/reset", R_RESET, S__COUNT, 0, "zero the counters" },
	{ "GET", "/_mock/last-request", R_LAST, S__COUNT, 0,
		"method, path, query, headers, body of the last /v1 or unknown request" },
};

struct stat_def {
	enum stat_id id;
	int group;   /* 0 top level, 1 "routes", 2 "usage" */
	const char *name;
};

static const struct stat_def stat_defs[] = {
	{ S_REQUESTS, 0, "requests_total" },
	{ S_R_OAUTH, 0, "token_endpoint_calls" },
	{ S_TOKENS_ISSUED, 0, "tokens_issued" },
	{ S_MESSAGES_COMPLETED, 0, "messages_completed" },
	{ S_STREAMS_COMPLETED, 0, "streams_completed" },
	{ S_R_MESSAGES, 1, "messages" },
	{ S_R_MESSAGES_STREAM, 1, "messages_stream" },
	{ S_R_COUNT_TOKENS, 1, "count_tokens" },
	{ S_R_MODELS, 1, "models" },
	{ S_R_OAUTH, 1, "oauth_token" },
	{ S_R_NOT_FOUND, 1, "not_found" },
	{ S_R_BAD_REQUEST, 1, "bad_request" },
	{ S_R_TOO_LARGE, 1, "too_large" },
	{ S_U_INPUT, 2, "input" },
	{ S_U_OUTPUT, 2, "output" },
	{ S_U_CACHE5M, 2, "cache5m" },
	{ S_U_CACHE1H, 2, "cache1h" },
	{ S_U_CACHE_READ, 2, "cache_read" },
};

static _Atomic uint64_t g_stats[S__COUNT];
static _Atomic uint64_t g_fault_stats[F__COUNT];
static _Atomic uint64_t g_next_id = 1;        /* request-id / message id; never reset */
static _Atomic uint64_t g_token_counter;      /* OAuth tokens issued; never reset */
static _Atomic uint64_t g_conns_accepted;     /* gauges and totals below: never reset */
static _Atomic uint64_t g_conns_open;
static _Atomic uint64_t g_streams_active;

static void stat_add(enum stat_id id, uint64_t v)
{
	atomic_fetch_add_explicit(&g_stats[id], v, memory_order_relaxed);
}

static void stat_inc(enum stat_id id)
{
	stat_add(id, 1);
}

static uint64_t next_id(void)
{
	return atomic_fetch_add_explicit(&g_next_id, 1, memory_order_relaxed);
}

static const char models_json[] =
	"{\"data\":["
	"{\"type\":\"model\",\"id\":\"claude-sonnet-4-5-20250929\","
	"\"display_name\":\"Claude Sonnet 4.5\",\"created_at\":\"2025-09-29T00:00:00Z\"},"
	"{\"type\":\"model\",\"id\":\"claude-opus-4-1-20250805\","
	"\"display_name\":\"Claude Opus 4.1\",\"created_at\":\"2025-08-05T00:00:00Z\"},"
	"{\"type\":\"model\",\"id\":\"claude-haiku-4-5-20251001\","
	"\"display_name\":\"Claude Haiku 4.5\",\"created_at\":\"2025-10-01T00:00:00Z\"}],"
	"\"has_more\":false,\"first_id\":\"claude-sonnet-4-5-20250929\","
	"\"last_id\":\"claude-haiku-4-5-20251001\"}";

/* Generated text: JSON-safe, repeated as needed. */
static const char text_pattern[] = "Hello from the mock upstream. ";

/* x-mock-tool: the tool_use input, whole (non-stream) and as the
 * input_json_delta fragments of a stream (they concatenate to the whole).
 * Both are JSON string contents, escapes included. */
#define TOOL_INPUT_JSON "{\"city\":\"Paris\",\"days\":3}"
static const char *const tool_input_parts[] = {
	"{\\\"city\\\":", "\\\"Paris\\\",", "\\\"days\\\":3}"
};
#define TOOL_DELTAS ARRAY_LEN(tool_input_parts)

/* ---------------------------------------------------- config and state */

struct cfg {
	uint64_t port;       /* UINT64_MAX until given */
	uint64_t threads;    /* 0: default */
	const char *bind;
	const char *pidfile;
	bool quiet, verbose, help;
};

enum opt_type { OPT_UINT, OPT_STR, OPT_FLAG };

struct opt_def {
	const char *name;
	enum opt_type type;
	size_t off;
	uint64_t min, max;
	const char *arg, *help;
};

static const struct opt_def opt_defs[] = {
	{ "--port", OPT_UINT, offsetof(struct cfg, port), 0, 65535, "N",
		"TCP port (required); 0 picks a free one" },
	{ "--bind", OPT_STR, offsetof(struct cfg, bind), 0, 0, "ADDR",
		"numeric IPv4/IPv6 address (default 127.0.0.1)" },
	{ "--threads", OPT_UINT, offsetof(struct cfg, threads), 1, MAX_THREADS, "N",
		"event-loop threads (default: online CPUs, at most 4)" },
	{ "--pidfile", OPT_STR, offsetof(struct cfg, pidfile), 0, 0, "FILE",
		"write the PID here; removed on exit" },
	{ "--quiet", OPT_FLAG, offsetof(struct cfg, quiet), 0, 0, NULL,
		"no log lines on stderr (the listening line still goes to stdout)" },
	{ "--verbose", OPT_FLAG, offsetof(struct cfg, verbose), 0, 0, NULL,
		"one stderr line per response" },
	{ "--help", OPT_FLAG, offsetof(struct cfg, help), 0, 0, NULL, "this text" },
};

struct hdr {
	uint32_t name_off, name_len, val_off, val_len;
};

enum ck_state { CK_SIZE, CK_DATA, CK_DATA_END, CK_TRAILER };

/* Parse state of the request at the start of conn.in. Offsets, because
 * the buffer may move when it grows. */
struct req {
	uint32_t method_off, method_len, target_off, target_len;
	unsigned minor;            /* HTTP/1.<minor> */
	unsigned nhdrs;
	size_t scan;               /* header-end search resumes here */
	size_t hdr_end;            /* just past the blank line; 0 until found */
	uint64_t content_length;
	bool has_cl, chunked, expect_continue, conn_close, conn_keepalive, sent_continue;
	enum ck_state ck;          /* chunked: decoded in place, body at hdr_end..wpos */
	uint64_t ck_left;
	size_t rpos, wpos, trailer_bytes;
	size_t body_len;           /* decoded body, at in.p + hdr_end */
	size_t consumed;           /* bytes of in that belong to this request */
};

enum oauth_res { OA_OK, OA_INVALID_GRANT, OA_INVALID_REQUEST, OA_UNSUPPORTED_GRANT };

/* What to answer; decided when the request is complete. */
struct plan {
	uint64_t id;
	enum route route;
	enum fault fault;
	struct knobs k;
	bool stream, chunked_out, head_only;
	enum oauth_res oauth;
	const char *bad_msg;       /* R_BAD: what is wrong ... */
	const char *bad_what;      /* ... with what (in conn.in, or NULL) */
	size_t bad_what_len;
	uint64_t step;             /* next stream step */
	size_t model_len;
	char model[MAX_MODEL_LEN];
};

enum cstate { CS_READING, CS_WAIT, CS_STREAM, CS_HANG, CS_FINISHING, CS_LINGER };

struct worker;

struct conn {
	struct worker *w;
	struct conn *prev, *next;
	int fd;
	uint32_t ev_mask;
	enum cstate state;
	bool eof;                  /* the peer sent FIN */
	bool close_after;          /* close (lingering) once the response is out */
	bool abort;                /* close at once once the output is flushed */
	bool in_stream;            /* counted in g_streams_active */
	size_t heap_idx;           /* NO_TIMER when not armed */
	uint64_t timer_at;
	struct buf in, out;
	size_t out_off;
	struct req rq;
	struct hdr hdrs[MAX_HEADERS];
	struct plan plan;
};

/* The last recorded request of one worker, copied out of the connection. */
struct lastreq {
	pthread_mutex_t mu;
	uint64_t seq;              /* its request id; 0: none yet */
	struct buf head;           /* request line + headers, names lowercased */
	struct hdr hdrs[MAX_HEADERS];
	unsigned nhdrs;
	uint32_t method_off, method_len, target_off, target_len;
	struct buf body;           /* at most MAX_LAST_BODY bytes */
	uint64_t body_len;
};

struct app;

struct worker {
	struct app *app;
	unsigned idx;
	int epfd, lfd;
	bool own_lfd, started;
	pthread_t tid;
	struct conn *conns;
	struct conn **heap;
	size_t heap_len, heap_cap;
	uint64_t now;              /* ms, CLOCK_MONOTONIC, refreshed per loop */
	int spare_fd;              /* given up on EMFILE to shed a connection */
	bool warned_emfile;
	struct buf scratch;        /* response bodies / SSE events being built */
	struct lastreq last;
};

struct app {
	struct cfg cfg;
	struct worker *workers;
	unsigned nworkers;
	int stop_efd;
	atomic_bool stop;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	unsigned port;
};

__attribute__((format(printf, 2, 3)))
static void logmsg(const struct app *app, const char *fmt, ...)
{
	va_list ap;

	if (app->cfg.quiet)
		return;
	va_start(ap, fmt);
	fputs("mock-upstream: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* -------------------------------------------------------------- timers */

static void heap_set(struct worker *w, size_t i, struct conn *c)
{
	w->heap[i] = c;
	c->heap_idx = i;
}

static void heap_up(struct worker *w, size_t i)
{
	struct conn *c = w->heap[i];
	size_t parent;

	while (i > 0) {
		parent = (i - 1) / 2;
		if (w->heap[parent]->timer_at <= c->timer_at)
			break;
		heap_set(w, i, w->heap[parent]);
		i = parent;
	}
	heap_set(w, i, c);
}

static void heap_down(struct worker *w, size_t i)
{
	struct conn *c = w->heap[i];
	size_t l, m;

	for (;;) {
		l = 2 * i + 1;
		if (l >= w->heap_len)
			break;
		m = l;
		if (l + 1 < w->heap_len && w->heap[l + 1]->timer_at < w->heap[l]->timer_at)
			m = l + 1;
		if (w->heap[m]->timer_at >= c->timer_at)
			break;
		heap_set(w, i, w->heap[m]);
		i = m;
	}
	heap_set(w, i, c);
}

static bool timer_arm(struct conn *c, uint64_t at)
{
	struct worker *w = c->w;
	struct conn **nh;
	size_t ncap;

	c->timer_at = at;
	if (c->heap_idx != NO_TIMER) {
		heap_up(w, c->heap_idx);
		heap_down(w, c->heap_idx);
		return true;
	}
	if (w->heap_len == w->heap_cap) {
		ncap = w->heap_cap ? w->heap_cap * 2 : 64;
		nh = realloc(w->heap, ncap * sizeof(*nh));
		if (!nh)
			return false;
		w->heap = nh;
		w->heap_cap = ncap;
	}
	heap_set(w, w->heap_len++, c);
	heap_up(w, c->heap_idx);
	return true;
}

static void timer_disarm(struct conn *c)
{
	struct worker *w = c->w;
	struct conn *last;
	size_t i = c->heap_idx;

	if (i == NO_TIMER)
		return;
	c->heap_idx = NO_TIMER;
	last = w->heap[--w->heap_len];
	if (i < w->heap_len) {
		heap_set(w, i, last);
		heap_up(w, i);
		heap_down(w, last->heap_idx);
	}
}

/* --------------------------------------------------------- connections */

static void conn_close(struct conn *c)
{
	struct worker *w = c->w;

	timer_disarm(c);
	if (c->in_stream)
		atomic_fetch_sub_explicit(&g_streams_active, 1, memory_order_relaxed);
	close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	buf_free(&c->in);
	buf_free(&c->out);
	free(c);
	atomic_fetch_sub_explicit(&g_conns_open, 1, memory_order_relaxed);
}

static void conn_new(struct worker *w, int fd)
{
	struct epoll_event ev;
	struct conn *c;
	int one = 1;

	c = calloc(1, sizeof(*c));
	if (!c)
		goto fail;
	c->w = w;
	c->fd = fd;
	c->heap_idx = NO_TIMER;
	c->state = CS_READING;
	c->ev_mask = EPOLLIN;
	ev.events = c->ev_mask;
	ev.data.ptr = c;
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		goto fail;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	atomic_fetch_add_explicit(&g_conns_accepted, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&g_conns_open, 1, memory_order_relaxed);
	return;
fail:
	free(c);
	close(fd);
}

static void conn_update_events(struct conn *c)
{
	struct epoll_event ev;
	uint32_t want;

	if (c->state == CS_READING || c->state == CS_LINGER)
		want = EPOLLIN;
	else
		want = c->eof ? 0 : EPOLLRDHUP;
	if (c->out_off < c->out.len)
		want |= EPOLLOUT;
	if (want == c->ev_mask)
		return;
	ev.events = want;
	ev.data.ptr = c;
	if (epoll_ctl(c->w->epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->ev_mask = want;
}

/* Sends what is queued. -1: the connection is broken. */
static int conn_flush(struct conn *c)
{
	ssize_t n;

	while (c->out_off < c->out.len) {
		n = send(c->fd, c->out.p + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
		if (n > 0) {
			c->out_off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		return -1;
	}
	c->out.len = 0;
	c->out_off = 0;
	buf_trim(&c->out);
	return 0;
}

/* -1: close the connection now. */
static int conn_read(struct conn *c)
{
	char sink[4096];
	size_t want, room;
	ssize_t n;
	int i;

	if (c->state == CS_LINGER) {
		for (i = 0; i < 16; i++) {
			n = recv(c->fd, sink, sizeof(sink), 0);
			if (n > 0)
				continue;
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				return 0;
			return -1;
		}
		return 0;
	}
	want = READ_MIN_FREE;
	if (c->rq.hdr_end && c->rq.has_cl) {
		size_t need = c->rq.hdr_end + (size_t)c->rq.content_length;

		if (need > c->in.len && need - c->in.len > want)
			want = need - c->in.len;
	}
	if (c->in.len >= IN_HARD_CAP)
		return -1;
	if (want > IN_HARD_CAP - c->in.len)
		want = IN_HARD_CAP - c->in.len;
	if (!buf_reserve(&c->in, want))
		return -1;
	room = c->in.cap - c->in.len;
	if (room > IN_HARD_CAP - c->in.len)
		room = IN_HARD_CAP - c->in.len;
	for (;;) {
		n = recv(c->fd, c->in.p + c->in.len, room, 0);
		if (n > 0) {
			c->in.len += (size_t)n;
			return 0;
		}
		if (n == 0) {
			c->eof = true;
			return 0;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		return -1;
	}
}

/* After "Connection: close": send FIN, discard input until the peer
 * closes or LINGER_MS pass, then close. Closing with unread input would
 * send an RST that can destroy the answer before the client reads it. */
static void conn_linger(struct conn *c)
{
	(void)shutdown(c->fd, SHUT_WR);
	c->state = CS_LINGER;
	c->in.len = 0;
	if (!timer_arm(c, c->w->now + LINGER_MS))
		c->abort = true;
}

/* ------------------------------------------------------- response output */

static struct buf *scratch_reset(struct worker *w)
{
	buf_trim(&w->scratch);
	w->scratch.len = 0;
	w->scratch.oom = false;
	return &w->scratch;
}

static const char *status_reason(unsigned status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 413: return "Payload Too Large";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	case 529: return "Overloaded";
	default: return "Unknown";
	}
}

static void head_begin(struct conn *c, unsigned status, const char *ctype)
{
	struct buf *o = &c->out;
	const struct req *r = &c->rq;

	buf_lit(o, "HTTP/1.1 ");
	buf_addu(o, status);
	buf_addc(o, ' ');
	buf_adds(o, status_reason(status));
	buf_lit(o, "\r\nContent-Type: ");
	buf_adds(o, ctype);
	buf_lit(o, "\r\nrequest-id: req_mock_");
	buf_addu(o, c->plan.id);
	buf_lit(o, "\r\n");
	if (c->close_after)
		buf_lit(o, "Connection: close\r\n");
	else if (r->minor == 0)
		buf_lit(o, "Connection: keep-alive\r\n");
	if (c->w->app->cfg.verbose && !c->w->app->cfg.quiet)
		fprintf(stderr, "mock-upstream: req_mock_%llu %.*s %.*s -> %u\n",
			(unsigned long long)c->plan.id,
			(int)r->method_len, r->method_len ? c->in.p + r->method_off : "",
			(int)r->target_len, r->target_len ? c->in.p + r->target_off : "",
			status);
}

static void head_end_len(struct conn *c, size_t len)
{
	buf_lit(&c->out, "Content-Length: ");
	buf_addu(&c->out, len);
	buf_lit(&c->out, "\r\n\r\n");
}

/* Sends the scratch buffer as the whole body. A fault's extra headers go
 * with it; disconnect-mid-stream cuts a 200 body in half and closes. */
static void send_scratch(struct conn *c, unsigned status, const char *ctype,
			 const struct fault_def *f)
{
	struct buf *s = &c->w->scratch;
	struct buf *o = &c->out;
	size_t n = s->len;

	if (s->oom) {
		o->oom = true;
		return;
	}
	head_begin(c, status, ctype);
	if (f && (f->flags & FF_RETRY_AFTER)) {
		buf_lit(o, "retry-after: ");
		buf_addu(o, c->plan.k.retry_after);
		buf_lit(o, "\r\n");
	}
	if (f && (f->flags & FF_RESET)) {
		buf_lit(o, "anthropic-ratelimit-unified-status: rejected\r\n"
			   "anthropic-ratelimit-unified-reset: ");
		buf_addu(o, (uint64_t)time(NULL) + c->plan.k.reset_in);
		buf_lit(o, "\r\n");
	}
	head_end_len(c, n);
	if (c->plan.head_only) {
		n = 0;
	} else if (status == 200 && c->plan.fault == F_DISCONNECT_MID) {
		n /= 2;
		c->abort = true;
	}
	buf_add(o, s->p, n);
	c->state = CS_FINISHING;
}

static void reply_error(struct conn *c, unsigned status, const char *type, const char *msg,
			const char *detail, size_t detail_len, const struct fault_def *f)
{
	struct buf *s = scratch_reset(c->w);

	buf_lit(s, "{\"type\":\"error\",\"error\":{\"type\":\"");
	buf_adds(s, type);
	buf_lit(s, "\",\"message\":\"");
	buf_add_jesc(s, msg, strlen(msg));
	buf_add_jesc(s, detail, detail_len);
	buf_lit(s, "\"},\"request_id\":\"req_mock_");
	buf_addu(s, c->plan.id);
	buf_lit(s, "\"}");
	send_scratch(c, status, "application/json", f);
}

static void put_usage(struct buf *s, const struct knobs *k, uint64_t output)
{
	buf_lit(s, "\"usage\":{\"input_tokens\":");
	buf_addu(s, k->usage[U_IN]);
	buf_lit(s, ",\"cache_creation_input_tokens\":");
	buf_addu(s, k->usage[U_C5] + k->usage[U_C1]);
	buf_lit(s, ",\"cache_read_input_tokens\":");
	buf_addu(s, k->usage[U_CR]);
	buf_lit(s, ",\"cache_creation\":{\"ephemeral_5m_input_tokens\":");
	buf_addu(s, k->usage[U_C5]);
	buf_lit(s, ",\"ephemeral_1h_input_tokens\":");
	buf_addu(s, k->usage[U_C1]);
	buf_lit(s, "},\"output_tokens\":");
	buf_addu(s, output);
	buf_addc(s, '}');
}

static void put_message_head(struct buf *s, const struct plan *p)
{
	buf_lit(s, "{\"id\":\"msg_mock_");
	buf_addu(s, p->id);
	buf_lit(s, "\",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
	buf_add_jstr(s, p->model, p->model_len);
	buf_addc(s, ',');
}

/* A tool_use content block of x-mock-tool with the given input. */
static void put_tool_use(struct buf *s, const struct plan *p, const char *input)
{
	buf_lit(s, "{\"type\":\"tool_use\",\"id\":\"toolu_mock_");
	buf_addu(s, p->id);
	buf_lit(s, "\",\"name\":");
	buf_add_jstr(s, p->k.tool, p->k.tool_len);
	buf_lit(s, ",\"input\":");
	buf_adds(s, input);
	buf_addc(s, '}');
}

static void put_text(struct buf *s, uint64_t off, uint64_t len)
{
	const size_t plen = sizeof(text_pattern) - 1;
	size_t at, n;

	if (!buf_reserve(s, (size_t)len))
		return;
	while (len) {
		at = (size_t)(off % plen);
		n = plen - at;
		if (n > len)
			n = (size_t)len;
		buf_add(s, text_pattern + at, n);
		off += n;
		len -= n;
	}
}

static void count_usage(const struct knobs *k)
{
	stat_inc(S_MESSAGES_COMPLETED);
	stat_add(S_U_INPUT, k->usage[U_IN]);
	stat_add(S_U_OUTPUT, k->usage[U_OUT]);
	stat_add(S_U_CACHE5M, k->usage[U_C5]);
	stat_add(S_U_CACHE1H, k->usage[U_C1]);
	stat_add(S_U_CACHE_READ, k->usage[U_CR]);
}

static void reply_message(struct conn *c)
{
	struct plan *p = &c->plan;
	struct buf *s = scratch_reset(c->w);

	put_message_head(s, p);
	buf_lit(s, "\"content\":[{\"type\":\"text\",\"text\":\"");
	put_text(s, 0, p->k.text_len);
	if (p->k.tool_len) {
		buf_lit(s, "\"},");
		put_tool_use(s, p, TOOL_INPUT_JSON);
		buf_lit(s, "],\"stop_reason\":\"tool_use\",\"stop_sequence\":null,");
	} else {
		buf_lit(s, "\"}],\"stop_reason\":\"end_turn\",\"stop_sequence\":null,");
	}
	if (p->k.no_usage)
		buf_lit(s, "\"usage\":null");
	else
		put_usage(s, &p->k, p->k.usage[U_OUT]);
	buf_addc(s, '}');
	send_scratch(c, 200, "application/json", NULL);
	if (p->fault != F_DISCONNECT_MID && !p->k.no_usage)   /* usage counts what was reported */
		count_usage(&p->k);
}

static void reply_oauth(struct conn *c)
{
	struct plan *p = &c->plan;
	struct buf *s = scratch_reset(c->w);
	uint64_t n;

	switch (p->oauth) {
	case OA_OK:
		n = atomic_fetch_add_explicit(&g_token_counter, 1, memory_order_relaxed) + 1;
		stat_inc(S_TOKENS_ISSUED);
		buf_lit(s, "{\"access_token\":\"mock-access-");
		buf_addu(s, n);
		buf_lit(s, "\",\"refresh_token\":\"mock-refresh-");
		buf_addu(s, n);
		buf_lit(s, "\",\"expires_in\":");
		buf_addu(s, p->k.expires_in);
		buf_lit(s, ",\"token_type\":\"Bearer\",\"scope\":\"user:inference user:profile\"}");
		send_scratch(c, 200, "application/json", NULL);
		return;
	case OA_INVALID_GRANT:
		buf_lit(s, "{\"error\":\"invalid_grant\","
			   "\"error_description\":\"Invalid refresh token (mock)\"}");
		break;
	case OA_INVALID_REQUEST:
		buf_lit(s, "{\"error\":\"invalid_request\","
			   "\"error_description\":\"grant_type and refresh_token (or code) are "
			   "required (mock)\"}");
		break;
	case OA_UNSUPPORTED_GRANT:
		buf_lit(s, "{\"error\":\"unsupported_grant_type\","
			   "\"error_description\":\"only refresh_token and authorization_code "
			   "(mock)\"}");
		break;
	}
	send_scratch(c, 400, "application/json", NULL);
}

static void render_stats(struct buf *s)
{
	size_t i, f;
	int g;
	bool first;
	static const char *const group_open[] = { "", ",\"routes\":{", ",\"usage\":{" };

	buf_addc(s, '{');
	for (g = 0; g < 3; g++) {
		buf_adds(s, group_open[g]);
		first = true;
		for (i = 0; i < ARRAY_LEN(stat_defs); i++) {
			if (stat_defs[i].group != g)
				continue;
			if (!first)
				buf_addc(s, ',');
			first = false;
			buf_add_jstr(s, stat_defs[i].name, strlen(stat_defs[i].name));
			buf_addc(s, ':');
			buf_addu(s, atomic_load_explicit(&g_stats[stat_defs[i].id],
							 memory_order_relaxed));
		}
		if (g > 0)
			buf_addc(s, '}');
		if (g == 1) {
			buf_lit(s, ",\"faults\":{");
			for (f = F_NONE + 1; f < F__COUNT; f++) {
				if (f > F_NONE + 1)
					buf_addc(s, ',');
				buf_add_jstr(s, fault_defs[f].name, strlen(fault_defs[f].name));
				buf_addc(s, ':');
				buf_addu(s, atomic_load_explicit(&g_fault_stats[f],
								 memory_order_relaxed));
			}
			buf_addc(s, '}');
		}
	}
	buf_lit(s, ",\"connections_open\":");
	buf_addu(s, atomic_load_explicit(&g_conns_open, memory_order_relaxed));
	buf_lit(s, ",\"connections_accepted\":");
	buf_addu(s, atomic_load_explicit(&g_conns_accepted, memory_order_relaxed));
	buf_lit(s, ",\"streams_active\":");
	buf_addu(s, atomic_load_explicit(&g_streams_active, memory_order_relaxed));
	buf_addc(s, '}');
}

static void stats_reset(void)
{
	size_t i;

	for (i = 0; i < S__COUNT; i++)
		atomic_store_explicit(&g_stats[i], 0, memory_order_relaxed);
	for (i = 0; i < F__COUNT; i++)
		atomic_store_explicit(&g_fault_stats[i], 0, memory_order_relaxed);
}

/* Splits a request target into path and query; an absolute-form target
 * ("http://host/p") is reduced to its path. */
static void target_split(const char *t, size_t n, const char **path, size_t *plen,
			 const char **query, size_t *qlen)
{
	const char *q, *slash;
	size_t skip = 0;

	if (n > 7 && (mem_ieq(t, 7, "http://") || (n > 8 && mem_ieq(t, 8, "https://")))) {
		skip = lower(t[4]) == 's' ? 8 : 7;
		slash = memchr(t + skip, '/', n - skip);
		skip = slash ? (size_t)(slash - t) : n;
	}
	t += skip;
	n -= skip;
	q = memchr(t, '?', n);
	*path = n ? t : "/";
	*plen = q ? (size_t)(q - t) : (n ? n : 1);
	*query = q ? q + 1 : NULL;
	*qlen = q ? n - (size_t)(q - t) - 1 : 0;
}

static void lastreq_record(struct conn *c)
{
	struct lastreq *l = &c->w->last;
	size_t keep = c->rq.body_len < MAX_LAST_BODY ? c->rq.body_len : MAX_LAST_BODY;

	pthread_mutex_lock(&l->mu);
	l->seq = c->plan.id;
	l->head.len = 0;
	l->head.oom = false;
	buf_add(&l->head, c->in.p, c->rq.hdr_end);
	memcpy(l->hdrs, c->hdrs, c->rq.nhdrs * sizeof(l->hdrs[0]));
	l->nhdrs = c->rq.nhdrs;
	l->method_off = c->rq.method_off;
	l->method_len = c->rq.method_len;
	l->target_off = c->rq.target_off;
	l->target_len = c->rq.target_len;
	l->body.len = 0;
	l->body.oom = false;
	buf_add(&l->body, c->in.p + c->rq.hdr_end, keep);
	l->body_len = c->rq.body_len;
	if (l->head.oom || l->body.oom)
		l->seq = 0;
	pthread_mutex_unlock(&l->mu);
}

static void render_last(struct worker *self, struct buf *s)
{
	struct app *app = self->app;
	struct lastreq *l = NULL;
	uint64_t best = 0;
	unsigned i, j, k;
	const char *h, *path, *query;
	size_t plen, qlen;
	bool dup;

	for (i = 0; i < app->nworkers; i++) {
		struct lastreq *cand = &app->workers[i].last;

		pthread_mutex_lock(&cand->mu);
		if (cand->seq > best) {
			best = cand->seq;
			l = cand;
		}
		pthread_mutex_unlock(&cand->mu);
	}
	if (!l) {
		buf_lit(s, "{\"request_id\":null,\"method\":null,\"path\":null,\"query\":null,"
			   "\"target\":null,\"headers\":{},\"body_len\":0,\"body\":null,"
			   "\"body_truncated\":false}");
		return;
	}
	pthread_mutex_lock(&l->mu);
	h = l->head.p;
	buf_lit(s, "{\"request_id\":\"req_mock_");
	buf_addu(s, l->seq);
	buf_lit(s, "\",\"method\":");
	buf_add_jstr(s, h + l->method_off, l->method_len);
	target_split(h + l->target_off, l->target_len, &path, &plen, &query, &qlen);
	buf_lit(s, ",\"path\":");
	buf_add_jstr(s, path, plen);
	buf_lit(s, ",\"query\":");
	if (query)
		buf_add_jstr(s, query, qlen);
	else
		buf_lit(s, "null");
	buf_lit(s, ",\"target\":");
	buf_add_jstr(s, h + l->target_off, l->target_len);
	buf_lit(s, ",\"headers\":{");
	for (i = 0, k = 0; i < l->nhdrs; i++) {
		const struct hdr *a = &l->hdrs[i];

		dup = false;
		for (j = 0; j < i && !dup; j++)
			dup = l->hdrs[j].name_len == a->name_len &&
			      memcmp(h + l->hdrs[j].name_off, h + a->name_off, a->name_len) == 0;
		if (dup)
			continue;
		if (k++)
			buf_addc(s, ',');
		buf_add_jstr(s, h + a->name_off, a->name_len);
		buf_lit(s, ":\"");
		buf_add_jesc(s, h + a->val_off, a->val_len);
		/* repeated headers are joined with ", " as HTTP allows */
		for (j = i + 1; j < l->nhdrs; j++) {
			const struct hdr *b = &l->hdrs[j];

			if (b->name_len == a->name_len &&
			    memcmp(h + b->name_off, h + a->name_off, a->name_len) == 0) {
				buf_lit(s, ", ");
				buf_add_jesc(s, h + b->val_off, b->val_len);
			}
		}
		buf_addc(s, '"');
	}
	buf_lit(s, "},\"body_len\":");
	buf_addu(s, l->body_len);
	buf_lit(s, ",\"body\":");
	buf_add_jstr(s, l->body.p, l->body.len);
	buf_lit(s, ",\"body_truncated\":");
	if (l->body.len < l->body_len)
		buf_lit(s, "true}");
	else
		buf_lit(s, "false}");
	pthread_mutex_unlock(&l->mu);
}

/* ------------------------------------------------------------ streaming */

static void ev_begin(struct worker *w, const char *name)
{
	struct buf *s = scratch_reset(w);

	buf_lit(s, "event: ");
	buf_adds(s, name);
	buf_lit(s, "\ndata: ");
}

/* Ends the event in scratch and queues it, one chunk per event. */
static void ev_end(struct conn *c)
{
	struct buf *s = &c->w->scratch;
	struct buf *o = &c->out;

	buf_lit(s, "\n\n");
	if (s->oom) {
		o->oom = true;
		return;
	}
	if (c->plan.chunked_out) {
		buf_addhex(o, s->len);
		buf_lit(o, "\r\n");
		buf_add(o, s->p, s->len);
		buf_lit(o, "\r\n");
	} else {
		buf_add(o, s->p, s->len);
	}
}

static void stream_finish(struct conn *c, bool end_body)
{
	if (end_body && c->plan.chunked_out)
		buf_lit(&c->out, "0\r\n\r\n");
	c->state = CS_FINISHING;
	if (c->in_stream) {
		c->in_stream = false;
		atomic_fetch_sub_explicit(&g_streams_active, 1, memory_order_relaxed);
	}
}

/* Emits stream step p->step: 0 headers + message_start, 1 content_block_start,
 * 2 ping, then the deltas, then content_block_stop, [x-mock-tool: the
 * tool_use block at index 1: content_block_start, TOOL_DELTAS
 * input_json_delta events, content_block_stop,] message_delta (usage
 * counted here) and message_stop + the end of the body. Mid-stream faults
 * replace what follows the first `cut` deltas. */
static void stream_step(struct conn *c)
{
	struct worker *w = c->w;
	struct plan *p = &c->plan;
	const struct knobs *k = &p->k;
	struct buf *s;
	uint64_t n = k->chunks, cut = n, step = p->step++, d, from, to, t;
	uint64_t tool_steps = k->tool_len ? TOOL_DELTAS + 2 : 0;
	bool mid = p->fault == F_DISCONNECT_MID || p->fault == F_ERROR_MID;

	if (mid) {
		cut = k->fault_after == KNOB_AUTO ? (n + 1) / 2 : k->fault_after;
		if (cut > n)
			cut = n;
	}
	if (step == 0) {
		head_begin(c, 200, "text/event-stream");
		buf_lit(&c->out, "Cache-Control: no-cache\r\n");
		if (p->chunked_out)
			buf_lit(&c->out, "Transfer-Encoding: chunked\r\n");
		buf_lit(&c->out, "\r\n");
		c->in_stream = true;
		atomic_fetch_add_explicit(&g_streams_active, 1, memory_order_relaxed);
		ev_begin(w, "message_start");
		s = &w->scratch;
		buf_lit(s, "{\"type\":\"message_start\",\"message\":");
		put_message_head(s, p);
		buf_lit(s, "\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,");
		put_usage(s, k, 1);
		buf_lit(s, "}}");
		ev_end(c);
	} else if (step == 1) {
		ev_begin(w, "content_block_start");
		buf_lit(&w->scratch, "{\"type\":\"content_block_start\",\"index\":0,"
				     "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}");
		ev_end(c);
	} else if (step == 2) {
		ev_begin(w, "ping");
		buf_lit(&w->scratch, "{\"type\": \"ping\"}");
		ev_end(c);
	} else if ((d = step - 3) < cut) {
		from = d * k->text_len / n;
		to = (d + 1) * k->text_len / n;
		ev_begin(w, "content_block_delta");
		s = &w->scratch;
		buf_lit(s, "{\"type\":\"content_block_delta\",\"index\":0,"
			   "\"delta\":{\"type\":\"text_delta\",\"text\":\"");
		put_text(s, from, to - from);
		buf_lit(s, "\"}}");
		ev_end(c);
	} else if (mid) {
		if (p->fault == F_DISCONNECT_MID) {
			c->abort = true;
			stream_finish(c, false);
		} else {
			ev_begin(w, "error");
			buf_lit(&w->scratch, "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
					     "\"message\":\"Overloaded (mock)\"}}");
			ev_end(c);
			stream_finish(c, true);
		}
		return;
	} else if (d - cut == 0) {
		ev_begin(w, "content_block_stop");
		buf_lit(&w->scratch, "{\"type\":\"content_block_stop\",\"index\":0}");
		ev_end(c);
	} else if ((t = d - cut - 1) < tool_steps) {
		s = &w->scratch;
		if (t == 0) {
			ev_begin(w, "content_block_start");
			buf_lit(s, "{\"type\":\"content_block_start\",\"index\":1,\"content_block\":");
			put_tool_use(s, p, "{}");
			buf_addc(s, '}');
		} else if (t <= TOOL_DELTAS) {
			ev_begin(w, "content_block_delta");
			buf_lit(s, "{\"type\":\"content_block_delta\",\"index\":1,"
				   "\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"");
			buf_adds(s, tool_input_parts[t - 1]);
			buf_lit(s, "\"}}");
		} else {
			ev_begin(w, "content_block_stop");
			buf_lit(s, "{\"type\":\"content_block_stop\",\"index\":1}");
		}
		ev_end(c);
	} else if (t == tool_steps) {
		ev_begin(w, "message_delta");
		s = &w->scratch;
		buf_lit(s, "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":");
		if (k->tool_len)
			buf_lit(s, "\"tool_use\"");
		else
			buf_lit(s, "\"end_turn\"");
		buf_lit(s, ",\"stop_sequence\":null},\"usage\":{\"output_tokens\":");
		buf_addu(s, k->usage[U_OUT]);
		buf_lit(s, "}}");
		ev_end(c);
		count_usage(k);
	} else {
		ev_begin(w, "message_stop");
		buf_lit(&w->scratch, "{\"type\":\"message_stop\"}");
		ev_end(c);
		stat_inc(S_STREAMS_COMPLETED);
		stream_finish(c, true);
		return;
	}
	if (k->delay_ms && !timer_arm(c, w->now + k->delay_ms)) {
		c->abort = true;
		stream_finish(c, false);
	}
}

/* ------------------------------------------------------ request parsing */

enum parse_res { P_MORE, P_DONE, P_ERR };

static enum parse_res parse_fail(struct conn *c, unsigned status, const char *msg)
{
	memset(&c->plan, 0, sizeof(c->plan));
	c->plan.id = next_id();
	c->close_after = true;
	stat_inc(status == 400 ? S_R_BAD_REQUEST : S_R_TOO_LARGE);
	reply_error(c, status, status == 400 ? "invalid_request_error" : "request_too_large",
		    msg, NULL, 0, NULL);
	return P_ERR;
}

static void maybe_continue(struct conn *c)
{
	struct req *r = &c->rq;

	if (r->expect_continue && !r->sent_continue && r->minor == 1) {
		buf_lit(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
		r->sent_continue = true;
	}
}

/* Parses the request line and the header lines in [0, hdr_end). Header
 * names are lowercased in place. Returns 0 or an HTTP status with *msg. */
static unsigned parse_head(struct conn *c, const char **msg)
{
	struct req *r = &c->rq;
	char *p = c->in.p;
	size_t end = r->hdr_end, i, le, ll, m, t, te, n, v, ve, k, s;
	const char *nl;
	uint64_t cl;

	nl = memchr(p, '\n', end);
	le = (size_t)(nl - p);
	ll = le > 0 && p[le - 1] == '\r' ? le - 1 : le;
	for (m = 0; m < ll && is_tchar((unsigned char)p[m]); m++)
		;
	*msg = "malformed request line";
	if (m == 0 || m > MAX_METHOD_LEN || m >= ll || p[m] != ' ')
		return 400;
	t = m + 1;
	for (te = t; te < ll && p[te] != ' '; te++)
		if ((unsigned char)p[te] < 0x21 || p[te] == 0x7f)
			return 400;
	if (te == t || te >= ll)
		return 400;
	if (ll - te - 1 != 8 || memcmp(p + te + 1, "HTTP/1.", 7) != 0 ||
	    (p[te + 8] != '0' && p[te + 8] != '1')) {
		*msg = "unsupported HTTP version";
		return 400;
	}
	r->method_off = 0;
	r->method_len = (uint32_t)m;
	r->target_off = (uint32_t)t;
	r->target_len = (uint32_t)(te - t);
	r->minor = (unsigned)(p[te + 8] - '0');

	for (i = le + 1; i < end; i = le + 1) {
		nl = memchr(p + i, '\n', end - i);
		le = (size_t)(nl - p);
		ll = le > i && p[le - 1] == '\r' ? le - 1 : le;
		if (ll == i)
			break;
		if (p[i] == ' ' || p[i] == '\t') {
			*msg = "obsolete header line folding";
			return 400;
		}
		for (n = i; n < ll && is_tchar((unsigned char)p[n]); n++)
			p[n] = lower(p[n]);
		if (n == i || n >= ll || p[n] != ':') {
			*msg = "malformed header line";
			return 400;
		}
		for (v = n + 1; v < ll && (p[v] == ' ' || p[v] == '\t'); v++)
			;
		for (ve = ll; ve > v && (p[ve - 1] == ' ' || p[ve - 1] == '\t'); ve--)
			;
		for (k = v; k < ve; k++) {
			if (((unsigned char)p[k] < 0x20 && p[k] != '\t') || p[k] == 0x7f) {
				*msg = "control character in a header value";
				return 400;
			}
		}
		if (r->nhdrs == MAX_HEADERS) {
			*msg = "too many header lines";
			return 431;
		}
		c->hdrs[r->nhdrs++] = (struct hdr){ (uint32_t)i, (uint32_t)(n - i),
						    (uint32_t)v, (uint32_t)(ve - v) };
	}

	for (i = 0; i < r->nhdrs; i++) {
		const struct hdr *h = &c->hdrs[i];
		const char *name = p + h->name_off, *val = p + h->val_off;

		if (mem_eq(name, h->name_len, "content-length")) {
			*msg = "invalid content-length";
			if (!parse_u64(val, h->val_len, UINT64_MAX, &cl))
				return 400;
			if (r->has_cl && cl != r->content_length)
				return 400;
			if (cl > MAX_BODY_BYTES) {
				*msg = "request body exceeds 64 MiB";
				return 413;
			}
			r->has_cl = true;
			r->content_length = cl;
		} else if (mem_eq(name, h->name_len, "transfer-encoding")) {
			*msg = "unsupported transfer-encoding (only chunked)";
			if (!mem_ieq(val, h->val_len, "chunked") || r->chunked)
				return 400;
			r->chunked = true;
		} else if (mem_eq(name, h->name_len, "connection")) {
			for (s = 0; s < h->val_len; s = k + 1) {
				for (k = s; k < h->val_len && val[k] != ','; k++)
					;
				for (v = s; v < k && (val[v] == ' ' || val[v] == '\t'); v++)
					;
				for (ve = k; ve > v && (val[ve - 1] == ' ' || val[ve - 1] == '\t'); ve--)
					;
				if (mem_ieq(val + v, ve - v, "close"))
					r->conn_close = true;
				else if (mem_ieq(val + v, ve - v, "keep-alive"))
					r->conn_keepalive = true;
			}
		} else if (mem_eq(name, h->name_len, "expect")) {
			if (mem_ieq(val, h->val_len, "100-continue"))
				r->expect_continue = true;
		}
	}
	if (r->chunked && (r->has_cl || r->minor == 0)) {
		*msg = "transfer-encoding with content-length or HTTP/1.0";
		return 400;
	}
	return 0;
}

/* Decodes a chunked body in place: data moves down to wpos, framing is
 * dropped, so the buffer never holds more than headers + decoded body +
 * one undecoded tail. */
static enum parse_res parse_chunked(struct conn *c)
{
	struct req *r = &c->rq;
	char *p = c->in.p, *nl;
	size_t len = c->in.len, le, ll, k, n, digits;
	uint64_t v;
	int h;
	bool blank;

	for (;;) {
		switch (r->ck) {
		case CK_SIZE:
			nl = r->rpos < len ? memchr(p + r->rpos, '\n', len - r->rpos) : NULL;
			if (!nl) {
				if (len - r->rpos > MAX_CHUNK_LINE)
					return parse_fail(c, 400, "chunk size line too long");
				goto more;
			}
			le = (size_t)(nl - p);
			if (le - r->rpos > MAX_CHUNK_LINE)
				return parse_fail(c, 400, "chunk size line too long");
			v = 0;
			digits = 0;
			for (k = r->rpos; k < le && (h = hexval(p[k])) >= 0; k++) {
				if (++digits > 15)
					return parse_fail(c, 400, "chunk size too large");
				v = v * 16 + (uint64_t)h;
			}
			while (k < le && (p[k] == ' ' || p[k] == '\t'))
				k++;
			if (!digits || (k < le && p[k] != ';' && !(p[k] == '\r' && k + 1 == le)))
				return parse_fail(c, 400, "malformed chunk size line");
			r->rpos = le + 1;
			if (v == 0) {
				r->ck = CK_TRAILER;
				break;
			}
			if (v > MAX_BODY_BYTES - (r->wpos - r->hdr_end))
				return parse_fail(c, 413, "request body exceeds 64 MiB");
			r->ck_left = v;
			r->ck = CK_DATA;
			break;
		case CK_DATA:
			n = len - r->rpos;
			if (n > r->ck_left)
				n = (size_t)r->ck_left;
			if (n && r->wpos != r->rpos)
				memmove(p + r->wpos, p + r->rpos, n);
			r->wpos += n;
			r->rpos += n;
			r->ck_left -= n;
			if (r->ck_left)
				goto more;
			r->ck = CK_DATA_END;
			break;
		case CK_DATA_END:
			if (r->rpos >= len)
				goto more;
			if (p[r->rpos] == '\r') {
				if (r->rpos + 1 >= len)
					goto more;
				if (p[r->rpos + 1] != '\n')
					return parse_fail(c, 400, "chunk data not followed by CRLF");
				r->rpos += 2;
			} else if (p[r->rpos] == '\n') {
				r->rpos++;
			} else {
				return parse_fail(c, 400, "chunk data not followed by CRLF");
			}
			r->ck = CK_SIZE;
			break;
		case CK_TRAILER:
			nl = r->rpos < len ? memchr(p + r->rpos, '\n', len - r->rpos) : NULL;
			if (!nl) {
				if (len - r->rpos + r->trailer_bytes > MAX_HEADER_BYTES)
					return parse_fail(c, 431, "chunked trailer exceeds 64 KiB");
				goto more;
			}
			le = (size_t)(nl - p);
			ll = le > r->rpos && p[le - 1] == '\r' ? le - 1 : le;
			r->trailer_bytes += le + 1 - r->rpos;
			if (r->trailer_bytes > MAX_HEADER_BYTES)
				return parse_fail(c, 431, "chunked trailer exceeds 64 KiB");
			blank = ll == r->rpos;
			r->rpos = le + 1;
			if (blank) {
				r->body_len = r->wpos - r->hdr_end;
				r->consumed = r->rpos;
				return P_DONE;
			}
			break;
		}
	}
more:
	if (r->rpos > r->wpos) {
		memmove(p + r->wpos, p + r->rpos, len - r->rpos);
		c->in.len -= r->rpos - r->wpos;
		r->rpos = r->wpos;
	}
	maybe_continue(c);
	return P_MORE;
}

/* Pure with respect to I/O: looks at conn.in, fills conn.rq and conn.hdrs,
 * and on a malformed request queues an error reply (P_ERR). */
static enum parse_res parse_request(struct conn *c)
{
	struct req *r = &c->rq;
	char *p = c->in.p, *nl;
	size_t s, le, ll, k;
	const char *msg;
	unsigned status;

	if (!r->hdr_end) {
		if (r->scan == 0) {
			/* RFC 9112 2.2: ignore empty lines before the request line */
			for (k = 0; k < c->in.len && (p[k] == '\r' || p[k] == '\n'); k++)
				;
			if (k) {
				memmove(p, p + k, c->in.len - k);
				c->in.len -= k;
			}
		}
		for (s = r->scan;;) {
			nl = s < c->in.len ? memchr(p + s, '\n', c->in.len - s) : NULL;
			if (!nl) {
				if (c->in.len > MAX_HEADER_BYTES)
					return parse_fail(c, 431, "request header block exceeds 64 KiB");
				r->scan = s;
				return P_MORE;
			}
			le = (size_t)(nl - p);
			if (le >= MAX_HEADER_BYTES)
				return parse_fail(c, 431, "request header block exceeds 64 KiB");
			ll = le > s && p[le - 1] == '\r' ? le - 1 : le;
			if (ll == s && s > 0)
				break;
			s = le + 1;
		}
		r->hdr_end = le + 1;
		status = parse_head(c, &msg);
		if (status)
			return parse_fail(c, status, msg);
		if (r->chunked) {
			r->rpos = r->wpos = r->hdr_end;
			r->ck = CK_SIZE;
		}
	}
	if (r->chunked)
		return parse_chunked(c);
	if (r->has_cl && c->in.len - r->hdr_end < r->content_length) {
		maybe_continue(c);
		return P_MORE;
	}
	r->body_len = r->has_cl ? (size_t)r->content_length : 0;
	r->consumed = r->hdr_end + r->body_len;
	return P_DONE;
}

static void request_reset(struct conn *c)
{
	size_t used = c->rq.consumed;

	if (used > c->in.len)
		used = c->in.len;
	if (c->in.len > used)
		memmove(c->in.p, c->in.p + used, c->in.len - used);
	c->in.len -= used;
	memset(&c->rq, 0, sizeof(c->rq));
	buf_trim(&c->in);
}

/* --------------------------------------------------------------- plans */

static void plan_bad(struct plan *p, const char *msg)
{
	p->route = R_BAD;
	p->bad_msg = msg;
	stat_inc(S_R_BAD_REQUEST);
}

/* Longest fault name that s starts with, ending at s's end or a '-'. */
static enum fault fault_prefix(const char *s, size_t n, bool whole)
{
	enum fault best = F__COUNT;
	size_t i, fl, bl = 0;

	for (i = 0; i < F__COUNT; i++) {
		fl = strlen(fault_defs[i].name);
		if (fl > n || memcmp(s, fault_defs[i].name, fl) != 0)
			continue;
		if (whole ? fl != n : (fl < n && s[fl] != '-'))
			continue;
		if (fl > bl) {
			best = (enum fault)i;
			bl = fl;
		}
	}
	return best;
}

static bool is_tool_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9') || ch == '_';
}

/* x-mock-tool NAME: [A-Za-z0-9_]{1,64}. */
static bool set_tool(struct knobs *k, const char *v, size_t n)
{
	size_t i;

	if (n == 0 || n > MAX_TOOL_NAME)
		return false;
	for (i = 0; i < n; i++)
		if (!is_tool_char(v[i]))
			return false;
	memcpy(k->tool, v, n);
	k->tool_len = n;
	return true;
}

/* Knobs in the model name: "mock-fault-<NAME>", "mock-<knob>-<digits>",
 * "mock-usage-I_O_C5_C1_R", "mock-tool-<NAME>" (NAME ends at the first
 * character outside [A-Za-z0-9_]). Header knobs are applied after these. */
static bool model_knobs(struct plan *p)
{
	const char *m = p->model, *at, *end = p->model + p->model_len, *v;
	char pat[64];
	size_t i, pl, vl;
	uint64_t val;
	enum fault f;

	for (at = m; (at = memmem(at, (size_t)(end - at), "mock-fault-", 11)); at++) {
		v = at + 11;
		if ((size_t)(end - v) >= 6 && memcmp(v, "after-", 6) == 0)
			continue;
		f = fault_prefix(v, (size_t)(end - v), false);
		if (f == F__COUNT) {
			plan_bad(p, "mock-upstream: unknown fault in model name (see --help)");
			return false;
		}
		p->k.fault = f;
		break;
	}
	for (i = 0; i < ARRAY_LEN(knob_defs); i++) {
		pl = strlen(knob_defs[i].header + 2);
		memcpy(pat, knob_defs[i].header + 2, pl);
		pat[pl++] = '-';
		at = memmem(m, p->model_len, pat, pl);
		if (!at)
			continue;
		v = at + pl;
		for (vl = 0; v + vl < end && v[vl] >= '0' && v[vl] <= '9'; vl++)
			;
		if (!parse_u64(v, vl, knob_defs[i].max, &val)) {
			plan_bad(p, "mock-upstream: bad knob value in model name");
			return false;
		}
		*(uint64_t *)((char *)&p->k + knob_defs[i].off) = val;
	}
	at = memmem(m, p->model_len, "mock-usage-", 11);
	if (at) {
		v = at + 11;
		for (vl = 0; v + vl < end && ((v[vl] >= '0' && v[vl] <= '9') || v[vl] == '_'); vl++)
			;
		if (!parse_usage(v, vl, p->k.usage)) {
			plan_bad(p, "mock-upstream: bad mock-usage-I_O_C5_C1_R in model name");
			return false;
		}
		p->k.usage_set = true;
	}
	at = memmem(m, p->model_len, "mock-tool-", 10);
	if (at) {
		v = at + 10;
		for (vl = 0; v + vl < end && is_tool_char(v[vl]); vl++)
			;
		if (!set_tool(&p->k, v, vl)) {
			plan_bad(p, "mock-upstream: bad mock-tool-NAME in model name "
				    "(NAME: 1 to 64 of A-Z a-z 0-9 _)");
			return false;
		}
	}
	return true;
}

static bool header_knobs(struct conn *c)
{
	struct plan *p = &c->plan;
	const char *in = c->in.p, *name, *val;
	unsigned i;
	size_t j;
	enum fault f;
	bool known;

	for (i = 0; i < c->rq.nhdrs; i++) {
		const struct hdr *h = &c->hdrs[i];

		name = in + h->name_off;
		val = in + h->val_off;
		if (h->name_len < 7 || memcmp(name, "x-mock-", 7) != 0)
			continue;
		if (mem_eq(name, h->name_len, "x-mock-usage")) {
			if (!parse_usage(val, h->val_len, p->k.usage)) {
				plan_bad(p, "mock-upstream: bad x-mock-usage (want I,O,C5,C1,R)");
				return false;
			}
			p->k.usage_set = true;
			continue;
		}
		if (mem_eq(name, h->name_len, "x-mock-tool")) {
			if (!set_tool(&p->k, val, h->val_len)) {
				plan_bad(p, "mock-upstream: bad x-mock-tool (want 1 to 64 of "
					    "A-Z a-z 0-9 _): ");
				p->bad_what = val;
				p->bad_what_len = h->val_len;
				return false;
			}
			continue;
		}
		if (mem_eq(name, h->name_len, "x-mock-fault")) {
			f = fault_prefix(val, h->val_len, true);
			if (f == F__COUNT) {
				plan_bad(p, "mock-upstream: unknown x-mock-fault (see --help): ");
				p->bad_what = val;
				p->bad_what_len = h->val_len;
				return false;
			}
			p->k.fault = f;
			continue;
		}
		known = false;
		for (j = 0; j < ARRAY_LEN(knob_defs) && !known; j++) {
			if (!mem_eq(name, h->name_len, knob_defs[j].header))
				continue;
			known = true;
			if (!parse_u64(val, h->val_len, knob_defs[j].max,
				       (uint64_t *)((char *)&p->k + knob_defs[j].off))) {
				plan_bad(p, "mock-upstream: bad number in ");
				p->bad_what = name;
				p->bad_what_len = h->name_len;
				return false;
			}
		}
		if (!known) {
			plan_bad(p, "mock-upstream: unknown knob (see --help): ");
			p->bad_what = name;
			p->bad_what_len = h->name_len;
			return false;
		}
	}
	return true;
}

struct param {
	const char *name;
	char val[MAX_PARAM_VALUE];
	size_t len;
	bool found;
};

static bool param_is(const struct param *pa, const char *lit)
{
	return pa->found && mem_eq(pa->val, pa->len, lit);
}

static void form_params(const char *s, size_t n, struct param *ps, size_t np)
{
	char key[64];
	size_t i = 0, e, j, klen;
	const char *eq;

	while (i < n) {
		for (e = i; e < n && s[e] != '&'; e++)
			;
		eq = memchr(s + i, '=', e - i);
		if (eq && url_decode(s + i, (size_t)(eq - (s + i)), key, sizeof(key), &klen)) {
			for (j = 0; j < np; j++) {
				if (ps[j].found || !mem_eq(key, klen, ps[j].name))
					continue;
				ps[j].found = url_decode(eq + 1, (size_t)(s + e - (eq + 1)),
							 ps[j].val, sizeof(ps[j].val), &ps[j].len);
			}
		}
		i = e + 1;
	}
}

static enum oauth_res oauth_check(const char *body, size_t n)
{
	struct param ps[3] = { { .name = "grant_type" }, { .name = "refresh_token" },
			       { .name = "code" } };
	struct jfield f[3] = { { .key = "grant_type" }, { .key = "refresh_token" },
			       { .key = "code" } };
	size_t i = skip_ws(body, n, 0), j;

	if (i < n && body[i] == '{') {
		if (!json_scan_top(body, n, f, 3))
			return OA_INVALID_REQUEST;
		for (j = 0; j < 3; j++)
			ps[j].found = f[j].found && f[j].is_str &&
				      json_unescape(f[j].val, f[j].val_len, ps[j].val,
						    sizeof(ps[j].val), &ps[j].len);
	} else {
		form_params(body, n, ps, 3);
	}
	if (!ps[0].found)
		return OA_INVALID_REQUEST;
	if (param_is(&ps[0], "refresh_token")) {
		if (!ps[1].found || ps[1].len == 0)
			return OA_INVALID_REQUEST;
		return param_is(&ps[1], "invalid") ? OA_INVALID_GRANT : OA_OK;
	}
	if (param_is(&ps[0], "authorization_code")) {
		if (!ps[2].found || ps[2].len == 0)
			return OA_INVALID_REQUEST;
		return param_is(&ps[2], "invalid") ? OA_INVALID_GRANT : OA_OK;
	}
	return OA_UNSUPPORTED_GRANT;
}

/* Knobs, model, stream flag and fault of a /v1 request. */
static void plan_v1(struct conn *c, unsigned flags)
{
	struct plan *p = &c->plan;
	const char *body = c->in.p + c->rq.hdr_end;
	size_t blen = c->rq.body_len;
	struct jfield f[2] = { { .key = "model" }, { .key = "stream" } };

	if (flags & RF_BODY) {
		if (!json_scan_top(body, blen, f, 2)) {
			plan_bad(p, "mock-upstream: the body is not a JSON object");
			return;
		}
		if (f[0].found && (!f[0].is_str ||
				   !json_unescape(f[0].val, f[0].val_len, p->model,
						  sizeof(p->model), &p->model_len))) {
			plan_bad(p, "model: a string of at most 256 bytes (mock cap)");
			return;
		}
		if (!f[0].found && p->route == R_MESSAGES) {
			plan_bad(p, "model: Field required");
			return;
		}
		p->stream = p->route == R_MESSAGES && f[1].found && !f[1].is_str &&
			    mem_eq(f[1].val, f[1].val_len, "true");
		if (!model_knobs(p))
			return;
	}
	if (!header_knobs(c))
		return;
	if (p->route == R_MESSAGES && p->k.force_stream)
		p->stream = true;
	p->fault = p->k.fault;
	if (p->fault != F_NONE)
		atomic_fetch_add_explicit(&g_fault_stats[p->fault], 1, memory_order_relaxed);
	if (p->stream) {
		stat_inc(S_R_MESSAGES_STREAM);
		if (!p->chunked_out)
			c->close_after = true;
	}
	if (p->route == R_OAUTH)
		p->oauth = oauth_check(body, blen);
}

static void respond(struct conn *c)
{
	struct plan *p = &c->plan;
	struct buf *s;
	const struct req *r = &c->rq;

	switch (p->fault) {
	case F_NONE:
	case F_DISCONNECT_MID:
		break;
	case F_HANG:
		c->state = CS_HANG;
		return;
	case F_DISCONNECT:
		c->abort = true;
		c->state = CS_FINISHING;
		return;
	case F_ERROR_MID:
		if (p->stream)
			break;
		reply_error(c, 529, "overloaded_error", "Overloaded (mock)", NULL, 0, NULL);
		return;
	default:
		reply_error(c, fault_defs[p->fault].status, fault_defs[p->fault].type,
			    fault_defs[p->fault].message, NULL, 0, &fault_defs[p->fault]);
		return;
	}
	switch (p->route) {
	case R_MESSAGES:
		if (p->stream) {
			c->state = CS_STREAM;
			p->step = 0;
		} else {
			reply_message(c);
		}
		return;
	case R_COUNT_TOKENS:
		s = scratch_reset(c->w);
		buf_lit(s, "{\"input_tokens\":");
		buf_addu(s, p->k.usage_set ? p->k.usage[U_IN] : DEFAULT_COUNT_TOKENS);
		buf_addc(s, '}');
		send_scratch(c, 200, "application/json", NULL);
		return;
	case R_MODELS:
		s = scratch_reset(c->w);
		buf_lit(s, models_json);
		send_scratch(c, 200, "application/json", NULL);
		return;
	case R_OAUTH:
		reply_oauth(c);
		return;
	case R_STATS:
		render_stats(scratch_reset(c->w));
		send_scratch(c, 200, "application/json", NULL);
		return;
	case R_RESET:
		stats_reset();
		s = scratch_reset(c->w);
		buf_lit(s, "{\"ok\":true}");
		send_scratch(c, 200, "application/json", NULL);
		return;
	case R_LAST:
		render_last(c->w, scratch_reset(c->w));
		send_scratch(c, 200, "application/json", NULL);
		return;
	case R_NOT_FOUND:
		reply_error(c, 404, "not_found_error", "mock-upstream: no route for ",
			    c->in.p + r->method_off, r->target_off + r->target_len - r->method_off,
			    NULL);
		return;
	case R_BAD:
		reply_error(c, 400, "invalid_request_error", p->bad_msg, p->bad_what,
			    p->bad_what_len, NULL);
		return;
	}
}

static void request_complete(struct conn *c)
{
	struct req *r = &c->rq;
	struct plan *p = &c->plan;
	const struct route_def *rd = NULL;
	const char *method = c->in.p + r->method_off, *path, *query;
	size_t plen, qlen, i, k;
	unsigned flags;

	memset(p, 0, sizeof(*p));
	p->id = next_id();
	for (i = 0; i < ARRAY_LEN(knob_defs); i++)
		*(uint64_t *)((char *)&p->k + knob_defs[i].off) = knob_defs[i].def;
	p->k.usage[U_IN] = 10;
	p->k.usage[U_OUT] = 20;
	p->k.fault = F_NONE;
	p->chunked_out = r->minor >= 1;
	if (r->conn_close || (r->minor == 0 && !r->conn_keepalive))
		c->close_after = true;

	target_split(c->in.p + r->target_off, r->target_len, &path, &plen, &query, &qlen);
	for (k = 0; k < ARRAY_LEN(route_defs); k++) {
		if (mem_eq(method, r->method_len, route_defs[k].method) &&
		    mem_eq(path, plen, route_defs[k].path)) {
			rd = &route_defs[k];
			break;
		}
	}
	p->route = rd ? rd->route : R_NOT_FOUND;
	p->head_only = mem_eq(method, r->method_len, "HEAD");
	flags = rd ? rd->flags : RF_RECORD;
	if (flags & RF_RECORD) {
		stat_inc(S_REQUESTS);
		lastreq_record(c);
	}
	if (!rd)
		stat_inc(S_R_NOT_FOUND);
	else if (rd->stat != S__COUNT)
		stat_inc(rd->stat);
	if (flags & RF_V1)
		plan_v1(c, flags);
	if ((flags & RF_V1) && p->route != R_BAD && p->k.first_byte_ms) {
		c->state = CS_WAIT;
		if (timer_arm(c, c->w->now + p->k.first_byte_ms))
			return;
		c->abort = true;
		c->state = CS_FINISHING;
		return;
	}
	respond(c);
}

/* ----------------------------------------------------------- the driver */

/* Moves a connection along as far as it can go without blocking: flush,
 * parse, answer, stream undelayed events, start the next request. Called
 * after reads, writability and timers. May free c. */
static void conn_drive(struct conn *c)
{
	size_t pending;
	bool batching;
	enum parse_res pr;

	for (;;) {
		if (c->out.oom) {
			conn_close(c);
			return;
		}
		pending = c->out.len - c->out_off;
		batching = c->state == CS_STREAM && c->heap_idx == NO_TIMER &&
			   pending < STREAM_BATCH;
		if (pending && !batching) {
			if (conn_flush(c) < 0) {
				conn_close(c);
				return;
			}
			if (c->out_off < c->out.len)
				break;   /* socket full: wait for EPOLLOUT */
		}
		switch (c->state) {
		case CS_READING:
			pr = parse_request(c);
			if (pr == P_MORE) {
				if (c->out_off < c->out.len)
					continue;   /* 100 Continue to send */
				if (c->eof) {
					conn_close(c);
					return;
				}
				goto wait;
			}
			if (pr == P_DONE)
				request_complete(c);
			continue;
		case CS_STREAM:
			if (c->heap_idx != NO_TIMER)
				goto wait;
			stream_step(c);
			continue;
		case CS_FINISHING:
			if (c->abort) {
				conn_close(c);
				return;
			}
			if (c->close_after || c->eof) {
				conn_linger(c);
				continue;
			}
			request_reset(c);
			c->state = CS_READING;
			continue;
		case CS_WAIT:
		case CS_HANG:
			goto wait;
		case CS_LINGER:
			if (c->abort) {
				conn_close(c);
				return;
			}
			goto wait;
		}
	}
wait:
	conn_update_events(c);
}

static void conn_on_event(struct conn *c, uint32_t events)
{
	if (events & EPOLLERR) {
		conn_close(c);
		return;
	}
	if (c->state == CS_READING || c->state == CS_LINGER) {
		if ((events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP)) && conn_read(c) < 0) {
			conn_close(c);
			return;
		}
	} else if (events & (EPOLLHUP | EPOLLRDHUP)) {
		conn_close(c);   /* the client left while we were answering */
		return;
	}
	conn_drive(c);
}

static void conn_on_timer(struct conn *c)
{
	switch (c->state) {
	case CS_WAIT:
		respond(c);
		break;
	case CS_LINGER:
		conn_close(c);
		return;
	default:
		break;   /* CS_STREAM: the next event is due */
	}
	conn_drive(c);
}

/* -------------------------------------------------------------- workers */

static void worker_accept(struct worker *w)
{
	int i, fd;

	for (i = 0; i < ACCEPT_BATCH; i++) {
		fd = accept4(w->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			conn_new(w, fd);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if ((errno == EMFILE || errno == ENFILE) && w->spare_fd >= 0) {
			/* out of descriptors: shed the connection instead of
			 * spinning on a listener that stays readable */
			if (!w->warned_emfile)
				logmsg(w->app, "out of file descriptors; shedding connections");
			w->warned_emfile = true;
			close(w->spare_fd);
			fd = accept4(w->lfd, NULL, NULL, SOCK_CLOEXEC);
			if (fd >= 0)
				close(fd);
			w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
			continue;
		}
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			logmsg(w->app, "accept: %s", strerror(errno));
		return;
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct epoll_event evs[EPOLL_BATCH];
	struct conn *c;
	uint64_t now, at;
	int i, n, timeout;

	while (!atomic_load(&w->app->stop)) {
		timeout = -1;
		if (w->heap_len) {
			now = now_ms();
			at = w->heap[0]->timer_at;
			timeout = at <= now ? 0 : (at - now > INT_MAX ? INT_MAX : (int)(at - now));
		}
		n = epoll_wait(w->epfd, evs, EPOLL_BATCH, timeout);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			logmsg(w->app, "epoll_wait: %s", strerror(errno));
			break;
		}
		w->now = now_ms();
		for (i = 0; i < n; i++) {
			if (evs[i].data.ptr == &w->lfd)
				worker_accept(w);
			else if (evs[i].data.ptr != &w->app->stop_efd)
				conn_on_event(evs[i].data.ptr, evs[i].events);
		}
		while (w->heap_len && w->heap[0]->timer_at <= w->now) {
			c = w->heap[0];
			timer_disarm(c);
			conn_on_timer(c);
		}
	}
	while (w->conns)
		conn_close(w->conns);
	return NULL;
}

static int listen_on(struct app *app, unsigned port, bool reuseport)
{
	struct sockaddr_storage ss = app->addr;
	int fd, one = 1;

	if (ss.ss_family == AF_INET)
		((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
	else
		((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		goto fail;
	if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
		goto fail;
	if (bind(fd, (struct sockaddr *)&ss, app->addrlen) < 0)
		goto fail;
	if (listen(fd, LISTEN_BACKLOG) < 0)
		goto fail;
	return fd;
fail:
	close(fd);
	return -1;
}

/* One listener per worker with SO_REUSEPORT (the kernel spreads the
 * connections); if that is refused, the workers without one share the first
 * listener, registered with EPOLLEXCLUSIVE so one accept wakes one thread. */
static bool workers_init(struct app *app)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct epoll_event ev;
	struct worker *w;
	bool shared = false;
	unsigned i;

	for (i = 0; i < app->nworkers; i++) {
		w = &app->workers[i];
		w->app = app;
		w->idx = i;
		w->lfd = -1;
		pthread_mutex_init(&w->last.mu, NULL);
		w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		w->epfd = epoll_create1(EPOLL_CLOEXEC);
		if (w->epfd < 0) {
			logmsg(app, "epoll_create1: %s", strerror(errno));
			return false;
		}
		if (i == 0) {
			/* SO_REUSEPORT would silently share a fixed port with a
			 * stale listener of the same user: make sure it is free */
			if (app->cfg.port && app->nworkers > 1) {
				w->lfd = listen_on(app, (unsigned)app->cfg.port, false);
				if (w->lfd < 0) {
					logmsg(app, "cannot listen on %s port %llu: %s",
					       app->cfg.bind, (unsigned long long)app->cfg.port,
					       strerror(errno));
					return false;
				}
				close(w->lfd);
			}
			w->lfd = listen_on(app, (unsigned)app->cfg.port, app->nworkers > 1);
			if (w->lfd < 0 && app->nworkers > 1)
				w->lfd = listen_on(app, (unsigned)app->cfg.port, false);
			if (w->lfd < 0) {
				logmsg(app, "cannot listen on %s port %llu: %s", app->cfg.bind,
				       (unsigned long long)app->cfg.port, strerror(errno));
				return false;
			}
			if (getsockname(w->lfd, (struct sockaddr *)&ss, &sl) < 0)
				return false;
			app->port = ntohs(ss.ss_family == AF_INET ?
					  ((struct sockaddr_in *)&ss)->sin_port :
					  ((struct sockaddr_in6 *)&ss)->sin6_port);
			w->own_lfd = true;
			continue;
		}
		w->lfd = listen_on(app, app->port, true);
		w->own_lfd = w->lfd >= 0;
		if (!w->own_lfd) {
			w->lfd = app->workers[0].lfd;
			shared = true;
		}
	}
	for (i = 0; i < app->nworkers; i++) {
		w = &app->workers[i];
		ev.events = EPOLLIN;
		if (shared && w->lfd == app->workers[0].lfd)
			ev.events |= EPOLLEXCLUSIVE;
		ev.data.ptr = &w->lfd;
		if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->lfd, &ev) < 0) {
			ev.events = EPOLLIN;   /* kernels before 4.5: no EPOLLEXCLUSIVE */
			if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->lfd, &ev) < 0)
				return false;
		}
		ev.events = EPOLLIN;
		ev.data.ptr = &app->stop_efd;
		if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, app->stop_efd, &ev) < 0)
			return false;
	}
	return true;
}

static void workers_free(struct app *app)
{
	struct worker *w;
	unsigned i;

	if (!app->workers)
		return;
	for (i = 0; i < app->nworkers; i++) {
		w = &app->workers[i];
		if (w->app == NULL)
			continue;
		if (w->own_lfd)
			close(w->lfd);
		if (w->epfd >= 0)
			close(w->epfd);
		if (w->spare_fd >= 0)
			close(w->spare_fd);
		free(w->heap);
		buf_free(&w->scratch);
		buf_free(&w->last.head);
		buf_free(&w->last.body);
		pthread_mutex_destroy(&w->last.mu);
	}
	free(app->workers);
	app->workers = NULL;
}

/* ----------------------------------------------------------------- main */

static void usage(FILE *f)
{
	size_t i;

	fputs("usage: mock-upstream --port N [--bind 127.0.0.1] [--threads N] [--pidfile F]"
	      " [--quiet] [--verbose]\n\n"
	      "A mock of Anthropic's Messages API for tests and benchmarks. Prints\n"
	      "\"listening on ADDR:PORT\" on stdout once ready; SIGTERM/SIGINT stop it.\n\n"
	      "options:\n", f);
	for (i = 0; i < ARRAY_LEN(opt_defs); i++)
		fprintf(f, "  %-10s %-5s %s\n", opt_defs[i].name,
			opt_defs[i].arg ? opt_defs[i].arg : "", opt_defs[i].help);
	fputs("\nroutes:\n", f);
	for (i = 0; i < ARRAY_LEN(route_defs); i++)
		fprintf(f, "  %-4s %-27s %s\n", route_defs[i].method, route_defs[i].path,
			route_defs[i].help);
	fputs("  anything else: 404 not_found_error\n"
	      "\nknobs, per request (/v1 routes). As headers, or in the model name\n"
	      "without the \"x-\" (e.g. \"claude-mock-chunks-30-mock-delay-ms-1000\");\n"
	      "headers win:\n"
	      "  x-mock-usage         I,O,C5,C1,R  input, output, cache write 5m, cache write 1h,\n"
	      "                       cache read (default 10,20,0,0,0; model: mock-usage-I_O_C5_C1_R)\n"
	      "  x-mock-fault         NAME (model: mock-fault-NAME)\n"
	      "  x-mock-tool          NAME  after the text, a tool_use block (index 1) calling NAME\n"
	      "                       ([A-Za-z0-9_], at most 64) with input {\"city\":\"Paris\",\"days\":3}\n"
	      "                       (3 input_json_delta events in a stream), stop_reason tool_use\n"
	      "                       (model: mock-tool-NAME)\n", f);
	for (i = 0; i < ARRAY_LEN(knob_defs); i++) {
		if (knob_defs[i].def == KNOB_AUTO)
			fprintf(f, "  %-20s N    %s\n", knob_defs[i].header, knob_defs[i].help);
		else
			fprintf(f, "  %-20s N    %s (default %llu)\n", knob_defs[i].header,
				knob_defs[i].help, (unsigned long long)knob_defs[i].def);
	}
	fputs("\nfaults:\n", f);
	for (i = 0; i < F__COUNT; i++)
		fprintf(f, "  %-22s %s\n", fault_defs[i].name, fault_defs[i].help);
}

static bool parse_args(struct cfg *cfg, int argc, char **argv)
{
	const struct opt_def *o;
	const char *a, *val, *eq;
	size_t nlen, j;
	uint64_t v;
	int i;

	for (i = 1; i < argc; i++) {
		a = argv[i];
		val = NULL;
		nlen = strlen(a);
		eq = strchr(a, '=');
		if (eq && a[0] == '-' && a[1] == '-') {
			nlen = (size_t)(eq - a);
			val = eq + 1;
		}
		o = NULL;
		for (j = 0; j < ARRAY_LEN(opt_defs); j++)
			if (mem_eq(a, nlen, opt_defs[j].name))
				o = &opt_defs[j];
		if (!o) {
			fprintf(stderr, "mock-upstream: unknown option %s (try --help)\n", a);
			return false;
		}
		if (o->type == OPT_FLAG) {
			if (val) {
				fprintf(stderr, "mock-upstream: %s takes no value\n", o->name);
				return false;
			}
			*(bool *)((char *)cfg + o->off) = true;
			continue;
		}
		if (!val) {
			if (i + 1 >= argc) {
				fprintf(stderr, "mock-upstream: %s needs a value\n", o->name);
				return false;
			}
			val = argv[++i];
		}
		if (o->type == OPT_STR) {
			*(const char **)((char *)cfg + o->off) = val;
			continue;
		}
		if (!parse_u64(val, strlen(val), o->max, &v) || v < o->min) {
			fprintf(stderr, "mock-upstream: %s wants a number from %llu to %llu\n",
				o->name, (unsigned long long)o->min, (unsigned long long)o->max);
			return false;
		}
		*(uint64_t *)((char *)cfg + o->off) = v;
	}
	return true;
}

static bool resolve_bind(struct app *app)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&app->addr;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&app->addr;

	memset(&app->addr, 0, sizeof(app->addr));
	if (inet_pton(AF_INET, app->cfg.bind, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		app->addrlen = sizeof(*sin);
		return true;
	}
	if (inet_pton(AF_INET6, app->cfg.bind, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		app->addrlen = sizeof(*sin6);
		return true;
	}
	fprintf(stderr, "mock-upstream: --bind wants a numeric IPv4 or IPv6 address\n");
	return false;
}

static bool write_pidfile(const char *path)
{
	char line[24];
	size_t n = fmt_u64(line, (uint64_t)getpid());
	bool ok;
	int fd;

	line[n++] = '\n';
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return false;
	ok = write(fd, line, n) == (ssize_t)n;
	return close(fd) == 0 && ok;
}

static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int main(int argc, char **argv)
{
	struct app app;
	sigset_t sigs;
	uint64_t one = 1;
	unsigned i;
	long ncpu;
	int sig = 0, rc = 1;
	bool pid_written = false;

	memset(&app, 0, sizeof(app));
	app.stop_efd = -1;
	app.cfg.port = UINT64_MAX;
	app.cfg.bind = "127.0.0.1";
	atomic_init(&app.stop, false);
	if (!parse_args(&app.cfg, argc, argv))
		return 2;
	if (app.cfg.help) {
		usage(stdout);
		return 0;
	}
	if (app.cfg.port == UINT64_MAX) {
		fprintf(stderr, "mock-upstream: --port is required (0 picks a free port)\n");
		return 2;
	}
	if (!resolve_bind(&app))
		return 2;
	if (!app.cfg.threads) {
		ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		app.cfg.threads = ncpu < 1 ? 1 : (ncpu > (long)DEFAULT_THREADS ?
						   DEFAULT_THREADS : (uint64_t)ncpu);
	}
	app.nworkers = (unsigned)app.cfg.threads;

	signal(SIGPIPE, SIG_IGN);
	raise_nofile();
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);   /* inherited by the workers */

	app.stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	app.workers = calloc(app.nworkers, sizeof(*app.workers));
	if (app.stop_efd < 0 || !app.workers) {
		logmsg(&app, "out of resources");
		goto out;
	}
	for (i = 0; i < app.nworkers; i++)
		app.workers[i].epfd = -1;
	if (!workers_init(&app))
		goto out;
	for (i = 0; i < app.nworkers; i++) {
		if (pthread_create(&app.workers[i].tid, NULL, worker_main, &app.workers[i]) != 0) {
			logmsg(&app, "pthread_create failed");
			goto stop;
		}
		app.workers[i].started = true;
	}
	if (app.cfg.pidfile) {
		if (!write_pidfile(app.cfg.pidfile)) {
			logmsg(&app, "cannot write %s: %s", app.cfg.pidfile, strerror(errno));
			goto stop;
		}
		pid_written = true;
	}
	if (app.addr.ss_family == AF_INET6)
		printf("listening on [%s]:%u\n", app.cfg.bind, app.port);
	else
		printf("listening on %s:%u\n", app.cfg.bind, app.port);
	fflush(stdout);
	logmsg(&app, "%u threads", app.nworkers);

	while (sigwait(&sigs, &sig) != 0)
		;
	logmsg(&app, "stopping on signal %d", sig);
	rc = 0;
stop:
	atomic_store(&app.stop, true);
	if (write(app.stop_efd, &one, sizeof(one)) < 0)
		logmsg(&app, "cannot wake the workers: %s", strerror(errno));
	for (i = 0; i < app.nworkers; i++)
		if (app.workers[i].started)
			pthread_join(app.workers[i].tid, NULL);
out:
	workers_free(&app);
	if (app.stop_efd >= 0)
		close(app.stop_efd);
	if (pid_written)
		unlink(app.cfg.pidfile);
	return rc;
}
