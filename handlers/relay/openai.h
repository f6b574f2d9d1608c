/* OpenAI Chat Completions on top of the Messages API (DESIGN §3, routes
 * /openai/claude/v1/chat/completions and /openai/v1/chat/completions).
 *
 * Three pure converters, no I/O:
 *   - ars_openai_to_claude: a Chat Completions request body -> a Messages
 *     request body, or a 400 naming the offending field;
 *   - ars_claude_to_openai_response / ars_claude_error_to_openai: a
 *     non-stream Messages response or an Anthropic error body -> the
 *     OpenAI shapes;
 *   - struct ars_openai_stream (openai_stream.c): the Messages SSE events,
 *     one at a time, -> `data: {chat.completion.chunk}` lines and `[DONE]`.
 *
 * What the relay does around them:
 *
 *     struct ars_openai_meta meta;
 *     err = ars_openai_to_claude(body, len, &opts, &claude, &meta, msg, sizeof msg);
 *     ARS_ERR_INVALID -> 400 invalid_request_error with msg
 *     ... send claude.data upstream, meta.claude_model picks the account ...
 *     non-stream 2xx: ars_claude_to_openai_response(resp, n, &meta, now, req_id, &out)
 *     non-stream >= 400: ars_claude_error_to_openai(status, resp, n, &out), same status
 *     stream: ars_openai_stream_init(&s, &meta, now, req_id, cfg->openai_show_thinking);
 *             for each parsed event: ars_openai_stream_event(&s, &ev, &out), write out;
 *             upstream failure or EOF before done: ars_openai_stream_abort(&s, why, &out)
 *
 * Differences from claude-relay-service (REFERENCE-crs.md §6), on purpose:
 * every system and developer message is kept (in order, as Claude `system`
 * text blocks), never replaced; http(s) image URLs are sent as URL image
 * sources instead of being refused; stream tool-call `index` is the ordinal
 * among tool calls, not the Claude content-block index; prompt_tokens
 * counts cache reads and writes (and cached_tokens reports the reads);
 * the usage chunk is sent only when stream_options.include_usage asks for
 * it; parameters Claude cannot honour are refused, not dropped.
 *
 * Request fields (top level; anything not listed is ignored, because
 * OpenAI SDKs send many fields that do not change the answer; a member
 * repeated at the top level, escapes decoded, is refused):
 *
 * | field                      | handling                                                        |
 * |----------------------------|-----------------------------------------------------------------|
 * | model                      | required; mapped through OPENAI_MODEL_MAP, unmapped names pass   |
 * |                            | through; 1..255 bytes, no control characters                     |
 * | messages                   | required, non-empty array; see "messages" below                  |
 * | max_completion_tokens      | -> max_tokens (wins over max_tokens); integer 1..1000000         |
 * |                            | (ARS_BODY_MAX_TOKENS_CAP)                                        |
 * | max_tokens                 | -> max_tokens, same range; default OPENAI_DEFAULT_MAX_TOKENS     |
 * | temperature                | 0..2 -> temperature, values above 1 clamped to 1 (Claude range)  |
 * | top_p                      | 0..1 -> top_p; dropped when it is 1 and temperature is also set  |
 * |                            | (1 means no cut-off, and newer Claude models refuse both)        |
 * | stop                       | string or array of at most 4 strings -> stop_sequences (empty    |
 * |                            | strings are skipped: they stop nothing)                          |
 * | stream                     | -> stream; meta.stream                                           |
 * | stream_options             | include_usage -> meta.include_usage (usage chunk at the end)     |
 * | user, safety_identifier    | -> metadata.user_id (user wins when both are set)                |
 * | tools                      | type "function" -> {name, description, input_schema, strict}     |
 * |                            | (parameters missing -> {"type":"object","properties":{}})        |
 * | functions (legacy)         | same as tools                                                    |
 * | tool_choice                | auto, none, required -> any, {"type":"function",...} -> tool     |
 * | function_call (legacy)     | auto, none, {"name"} -> tool; tool_choice wins when both are set |
 * | parallel_tool_calls        | false -> tool_choice.disable_parallel_tool_use = true            |
 * | reasoning_effort           | -> output_config.effort: none/minimal/low -> low, medium ->      |
 * |                            | medium, high/xhigh -> high (see the note below)                  |
 * | response_format            | text: ignored; json_object: ignored (OpenAI itself requires the  |
 * |                            | prompt to ask for JSON, which Claude follows); json_schema,      |
 * |                            | strict or not -> output_config.format {type json_schema,         |
 * |                            | schema} (a schema Claude refuses: its 400, in OpenAI's shape)    |
 * | n                          | 1 or null accepted; anything else refused (one choice only)      |
 * | logprobs                   | false or null accepted; true refused (Claude has no logprobs)    |
 * | top_logprobs               | null or 0 accepted; more refused                                 |
 * | logit_bias                 | null or {} accepted; any entry refused (no token biasing)        |
 * | audio                      | refused unless null (no audio output)                            |
 * | modalities                 | ["text"] or null accepted; any other modality refused            |
 * | web_search_options         | refused unless null (not mapped to Claude's server tools)        |
 * | seed                       | ignored (OpenAI calls it best effort; Claude has none)           |
 * | frequency_penalty,         | ignored (no Claude equivalent; they only nudge sampling)         |
 * | presence_penalty           |                                                                  |
 * | prediction                 | ignored (a latency hint; the output does not depend on it)       |
 * | store, metadata,           | ignored (OpenAI-side storage, dashboards, caching and tiers)     |
 * | service_tier,              |                                                                  |
 * | prompt_cache_key, verbosity|                                                                  |
 *
 * messages: role system / developer (string or text parts) -> Claude
 * `system` text blocks, all of them, in order, wherever they stand; user
 * (string or parts: text, image_url with a data: URL of image/jpeg, png,
 * gif or webp and valid base64 -> base64 image, or an http(s) URL -> url image); assistant
 * (string, text / refusal parts, or null; tool_calls -> tool_use blocks
 * whose input is the parsed arguments string; legacy function_call too);
 * tool (tool_call_id, string or text parts) -> tool_result in a user turn;
 * legacy function (name, content) -> tool_result for the last legacy
 * function_call. Consecutive turns of the same Claude role are merged into
 * one (tool results first in a user turn, as Claude requires), and empty
 * text is dropped (Claude refuses empty text blocks). Parts of other types
 * (input_audio, file) are refused. Unknown fields of a message are ignored.
 *
 * reasoning_effort: the Messages API takes `output_config: {"effort":
 * "low"|"medium"|"high"|...}` (generally available, no beta header; it is
 * what Claude Code sends). OpenAI's minimal and none have no lower Claude
 * level than low; xhigh is sent as high because Claude's xhigh exists on
 * only some models. Effort does not turn thinking on; models that do not
 * support it answer 400, which is passed back.
 *
 * Validation goes as far as giving a precise 400 for what a client can get
 * wrong in OpenAI's own terms (types, ranges, tool names, image data);
 * what only Claude knows (model names, schema keywords it refuses, id
 * pairing) is left to the upstream, whose 400 is passed back through
 * ars_claude_error_to_openai.
 *
 * Caps (client-controlled; over a cap is a 400 naming the field):
 * ARS_OPENAI_MAX_MESSAGES, ARS_OPENAI_MAX_PARTS per message,
 * ARS_OPENAI_MAX_TOOLS (tools + functions), ARS_OPENAI_MAX_DEPTH JSON
 * nesting (the body and each tool-call arguments string), and
 * ARS_OPENAI_MODEL_BYTES for the model name. The body size itself is
 * capped by the relay before conversion. */
#ifndef ARS_RELAY_OPENAI_H
#define ARS_RELAY_OPENAI_H

#include <stddef.h>

#include "buf.h"
#include "err.h"
#include "sse.h"

#define ARS_OPENAI_MAX_MESSAGES   10000
#define ARS_OPENAI_MAX_PARTS      1000     /* content parts or tool_calls of one message */
#define ARS_OPENAI_MAX_TOOLS      500
#define ARS_OPENAI_MAX_DEPTH      64       /* JSON nesting of a request body */
#define ARS_OPENAI_MAX_STOP       4        /* as OpenAI */
#define ARS_OPENAI_MODEL_BYTES    256      /* model names, NUL included */
#define ARS_OPENAI_ID_BYTES       192      /* "chatcmpl-" + the caller's id, NUL included */
/* Nesting accepted in upstream bodies and events (tool inputs the model
 * wrote); deeper ones are a converter error, not a client error. */
#define ARS_OPENAI_UPSTREAM_DEPTH 128

struct ars_openai_opts {
    const char *model_map_json;    /* JSON object text, name -> Claude model; NULL or "" for none */
    long long default_max_tokens;  /* when the request sets none; <= 0 means 4096 */
    int show_thinking;             /* copied to meta.show_thinking */
};

/* What the relay needs to know about the request after conversion. */
struct ars_openai_meta {
    char model[ARS_OPENAI_MODEL_BYTES];         /* as the client asked; echoed in responses */
    char claude_model[ARS_OPENAI_MODEL_BYTES];  /* after the model map; sent upstream */
    int stream;                    /* "stream": true */
    int include_usage;             /* stream_options.include_usage: true */
    int n_tools;                   /* tools + legacy functions sent upstream */
    int show_thinking;             /* from opts: thinking -> reasoning_content */
};

/* Converts an OpenAI Chat Completions request body to a Messages request
 * body, appended to out (JSON object text, no trailing newline). o may be
 * NULL (no model map, max_tokens 4096, thinking hidden).
 *
 * Returns ARS_OK and fills *meta; ARS_ERR_INVALID for anything the client
 * must fix, with errbuf holding "FIELD: what is wrong" where FIELD is the
 * path of the offending value ("messages[2].content[1].image_url.url"),
 * meant for a 400 invalid_request_error; ARS_ERR_TOOBIG when the converted
 * body does not fit out's cap; ARS_ERR_NOMEM. On failure out is left as it
 * was and *meta is unspecified. Deterministic: the same body and options
 * give the same bytes (the relay hashes them for sticky sessions). */
ARS_MUST_USE enum ars_err ars_openai_to_claude(const char *body, size_t len, const struct ars_openai_opts *o,
                                  struct ars_buf *out, struct ars_openai_meta *meta,
                                  char *errbuf, size_t errlen);

/* Converts a non-stream Messages response (HTTP 2xx body) to a
 * `chat.completion` object appended to out:
 * id "chatcmpl-" + id, created, model = meta->model (the client's name),
 * one choice with message {role, content (text blocks joined; null when
 * there are only tool calls), tool_calls (arguments as a JSON string),
 * reasoning_content (thinking joined, only when meta->show_thinking),
 * refusal null}, finish_reason (ars_openai_finish_reason), and usage
 * {prompt_tokens = input + cache reads + cache writes, completion_tokens,
 * total_tokens, prompt_tokens_details.cached_tokens = cache reads}.
 * ARS_ERR_INVALID when the body is not a Messages response (the relay
 * answers 502); ARS_ERR_TOOBIG, ARS_ERR_NOMEM. On failure out is left as
 * it was. */
ARS_MUST_USE enum ars_err ars_claude_to_openai_response(const char *claude_body, size_t len,
                                           const struct ars_openai_meta *meta, long long created,
                                           const char *id, struct ars_buf *out);

/* Converts an upstream error answer to OpenAI's
 * {"error":{"message","type","param":null,"code"}}, appended to out. An
 * Anthropic error body keeps its message; its type picks type and code
 * (invalid_request_error -> invalid_request_error / invalid_request,
 * authentication_error -> authentication_error / invalid_api_key,
 * permission_error -> permission_error / permission_denied,
 * not_found_error -> not_found_error / not_found, request_too_large ->
 * invalid_request_error / request_too_large, rate_limit_error ->
 * rate_limit_error / rate_limit_exceeded, billing_error ->
 * insufficient_quota, timeout_error -> server_error / timeout, api_error ->
 * server_error, overloaded_error -> server_error / overloaded; others by
 * status). Anything else (HTML from a proxy, empty) gives "upstream
 * returned HTTP <status>" typed by the status. ARS_ERR_TOOBIG, NOMEM. */
ARS_MUST_USE enum ars_err ars_claude_error_to_openai(int status, const char *claude_body, size_t len,
                                        struct ars_buf *out);

/* finish_reason for a Claude stop_reason: end_turn, stop_sequence,
 * pause_turn -> "stop"; max_tokens, model_context_window_exceeded ->
 * "length"; tool_use -> "tool_calls"; refusal -> "content_filter";
 * NULL, empty or unknown -> "stop". */
const char *ars_openai_finish_reason(const char *stop_reason, size_t len);

/* Shared by the converters: appends {"error":{"message","type","param":null,
 * "code"}} with type and code picked from the Anthropic error type (may be
 * NULL) or else the HTTP status (0 when unknown: server_error). */
ARS_MUST_USE enum ars_err ars_openai_error_object(struct ars_buf *out, int status, const char *claude_type,
                                     size_t type_len, const char *message, size_t message_len);

/* Shared by the converters: appends the OpenAI usage object for Claude
 * counts: {"prompt_tokens": input + cache reads + cache writes,
 * "completion_tokens", "total_tokens", "prompt_tokens_details":
 * {"cached_tokens": cache reads}}. */
ARS_MUST_USE enum ars_err ars_openai_usage_object(struct ars_buf *out, const struct ars_usage *u);

/* Shared by the converters: "chatcmpl-" + id into dst (size bytes), cut
 * at a character boundary to fit. */
void ars_openai_completion_id(char *dst, size_t size, const char *id);

/* ---- streaming (openai_stream.c) ----------------------------------------- */

/* Converter state for one stream. Embeddable, no heap; fields private. */
struct ars_openai_stream {
    char id[ARS_OPENAI_ID_BYTES];          /* "chatcmpl-..." */
    char model[ARS_OPENAI_MODEL_BYTES];
    long long created;
    int show_thinking;
    int include_usage;
    int started;               /* the role chunk went out */
    int done;                  /* [DONE] went out */
    long long block;           /* Claude index of the open content block, -1: none */
    int block_kind;            /* what that block is (openai_stream.c) */
    int tool_ordinal;          /* tool-call index of that block when it is a tool_use */
    int n_tool_calls;          /* tool calls started so far */
    struct ars_sse_usage usage;   /* from message_start / message_delta */
};

/* meta gives the client's model name and include_usage; id is the
 * caller's request id (the chunk id is "chatcmpl-" + id, cut to fit). */
void ars_openai_stream_init(struct ars_openai_stream *s, const struct ars_openai_meta *meta,
                            long long created, const char *id, int show_thinking);

/* Consumes one Claude SSE event and appends zero or more `data: ...\n\n`
 * lines to out:
 *   message_start        -> the first chunk, delta {role: assistant, content: ""}
 *   text_delta           -> delta.content
 *   tool_use block start -> delta.tool_calls [{index, id, type, function {name, arguments ""}}]
 *   input_json_delta     -> delta.tool_calls [{index, function {arguments: partial_json}}]
 *   thinking_delta       -> delta.reasoning_content when show_thinking, else nothing
 *   message_delta        -> nothing; stop_reason and usage are remembered
 *   message_stop         -> final chunk (empty delta, finish_reason), the usage chunk
 *                           (choices [], only with include_usage), then `data: [DONE]`
 *   error                -> `data: {"error":{...}}` then `data: [DONE]`
 *   ping, others         -> nothing
 * The role chunk is sent before the first content even when message_start
 * was missing. Events after [DONE], and events whose data is not the JSON
 * they should be, produce nothing. An unnamed event ("message") is taken
 * by the type in its data. With include_usage every chunk but the usage
 * chunk carries "usage": null, as OpenAI does. ARS_ERR_TOOBIG / NOMEM
 * from out: out is rolled back to where it was (never half a chunk); end
 * the client's stream rather than feed further events. */
ARS_MUST_USE enum ars_err ars_openai_stream_event(struct ars_openai_stream *s, const struct ars_sse_event *ev,
                                     struct ars_buf *out);

/* Upstream failed mid-stream (connection lost, timeout, EOF before
 * message_stop): an error chunk with message (type server_error) and
 * `[DONE]`. Nothing once the stream is done. */
ARS_MUST_USE enum ars_err ars_openai_stream_abort(struct ars_openai_stream *s, const char *message,
                                     struct ars_buf *out);

/* 1 once `data: [DONE]` was written. */
int ars_openai_stream_done(const struct ars_openai_stream *s);

#endif
