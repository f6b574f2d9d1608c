/* OpenAI Chat Completions <-> Messages conversion (handlers/relay/openai.c,
 * openai_stream.c): requests as Claude receives them, refusals with the
 * field that is wrong, responses, errors and streams as an OpenAI client
 * sees them.
 *
 * JSON in the tables is written with ' for " (none of the texts needs an
 * apostrophe); q() turns it back. Expected bodies are compared as parsed
 * JSON, so member order and spacing do not matter but every member does. */
#include <check.h>
#include "plan.h"
#include <json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "openai.h"
#include "sse.h"

#define BUF_CAP (64u * 1024 * 1024)

/* ---- helpers --------------------------------------------------------------- */

static char *q(const char *s)
{
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    ck_assert_ptr_nonnull(d);
    for (size_t i = 0; i <= n; i++)
        d[i] = s[i] == '\'' ? '"' : s[i];
    return d;
}

static struct json_object *parse(const char *s, size_t n)
{
    struct json_tokener *tok = json_tokener_new_ex(256);
    struct json_object *o = json_tokener_parse_ex(tok, s, (int)n);
    int ok = o && json_tokener_get_error(tok) == json_tokener_success && json_tokener_get_parse_end(tok) == n;
    json_tokener_free(tok);
    ck_assert_msg(ok, "not one JSON value: %.*s", (int)n, s);
    return o;
}

/* got (n bytes) and want (with ' for ") are the same JSON. */
static void assert_json(const char *got, size_t n, const char *want_q)
{
    char *want = q(want_q);
    struct json_object *g = parse(got, n);
    struct json_object *w = parse(want, strlen(want));
    ck_assert_msg(json_object_equal(g, w), "\n got: %.*s\nwant: %s", (int)n, got, want);
    json_object_put(g);
    json_object_put(w);
    free(want);
}

struct conv {
    struct ars_buf out;
    struct ars_openai_meta meta;
    char err[512];
    enum ars_err rc;
};

static void convert(struct conv *c, const char *req_q, const struct ars_openai_opts *opts)
{
    static const struct ars_openai_opts defaults = { NULL, 0, 0 };
    char *req = q(req_q);
    ars_buf_init(&c->out, BUF_CAP);
    c->rc = ars_openai_to_claude(req, strlen(req), opts ? opts : &defaults, &c->out, &c->meta,
                                 c->err, sizeof(c->err));
    free(req);
}

static void conv_done(struct conv *c)
{
    ars_buf_deinit(&c->out);
}

/* ---- request conversion: accepted -------------------------------------------- */

struct ok_case {
    const char *name;
    const char *map;           /* model map, or NULL */
    const char *request;
    const char *claude;        /* the body Claude receives */
};

static const struct ok_case OK_CASES[] = {
    { "text only",
      NULL,
      "{'model':'gpt-4o','messages':[{'role':'user','content':'Hi'}]}",
      "{'model':'gpt-4o','max_tokens':4096,'messages':[{'role':'user','content':[{'type':'text','text':'Hi'}]}]}" },

    { "model map applies, unmapped names pass through",
      "{'gpt-4o':'claude-sonnet-4-5','other':'claude-opus-4-1'}",
      "{'model':'gpt-4o','messages':[{'role':'user','content':'Hi'}]}",
      "{'model':'claude-sonnet-4-5','max_tokens':4096,'messages':[{'role':'user','content':[{'type':'text','text':'Hi'}]}]}" },

    { "every system and developer message is kept, in order, even after the first user turn",
      NULL,
      "{'model':'m','messages':["
      "{'role':'system','content':'S1'},"
      "{'role':'developer','content':[{'type':'text','text':'D1a'},{'type':'text','text':'D1b'}]},"
      "{'role':'user','content':'U1'},"
      "{'role':'system','content':'S2 late'},"
      "{'role':'assistant','content':'A1'},"
      "{'role':'developer','content':'D2'},"
      "{'role':'user','content':'U2'}]}",
      "{'model':'m','max_tokens':4096,"
      "'system':[{'type':'text','text':'S1'},{'type':'text','text':'D1a'},{'type':'text','text':'D1b'},"
      "{'type':'text','text':'S2 late'},{'type':'text','text':'D2'}],"
      "'messages':[{'role':'user','content':[{'type':'text','text':'U1'}]},"
      "{'role':'assistant','content':[{'type':'text','text':'A1'}]},"
      "{'role':'user','content':[{'type':'text','text':'U2'}]}]}" },

    { "images: data URL to base64, https URL to url source, image/jpg read as image/jpeg",
      NULL,
      "{'model':'m','messages':[{'role':'user','content':["
      "{'type':'text','text':'What is this?'},"
      "{'type':'image_url','image_url':{'url':'data:image/png;base64,iVBORw0KGgo=','detail':'high'}},"
      "{'type':'image_url','image_url':{'url':'https://example.com/cat.jpg'}},"
      "{'type':'image_url','image_url':{'url':'data:IMAGE/JPG;base64,/9j/4AAQ'}}]}]}",
      "{'model':'m','max_tokens':4096,'messages':[{'role':'user','content':["
      "{'type':'text','text':'What is this?'},"
      "{'type':'image','source':{'type':'base64','media_type':'image/png','data':'iVBORw0KGgo='}},"
      "{'type':'image','source':{'type':'url','url':'https://example.com/cat.jpg'}},"
      "{'type':'image','source':{'type':'base64','media_type':'image/jpeg','data':'/9j/4AAQ'}}]}]}" },

    { "tools: parameters pass through, missing parameters become an empty object schema",
      NULL,
      "{'model':'m','messages':[{'role':'user','content':'x'}],'tools':["
      "{'type':'function','function':{'name':'get_weather','description':'Weather now',"
      "'parameters':{'type':'object','properties':{'city':{'type':'string','minLength':0.5}},'required':['city']}}},"
      "{'type':'function','function':{'name':'ping','strict':true}}]}",
      "{'model':'m','max_tokens':4096,'messages':[{'role':'user','content':[{'type':'text','text':'x'}]}],'tools':["
      "{'name':'get_weather','description':'Weather now',"
      "'input_schema':{'type':'object','properties':{'city':{'type':'string','minLength':0.5}},'required':['city']}},"
      "{'name':'ping','input_schema':{'type':'object','properties':{}},'strict':true}]}" },

    { "tool_choice required becomes any",
      NULL,
      "{'model':'m','messages':[{'role':'user','content':'x'}],'tools':[{'type':'function','function':{'name':'f'}}],"
      "'tool_choice':'required'}",
      "{'model':'m','max_tokens':4096,'messages':[{'role':'user','content':[{'type':'text','text':'x'}]}],"
      "'tools':[{'name':'f','input_schema':{'type':'object','properties':{}}}],'tool_choice':{'type':'any'}}" },

    { "tool_choice none and auto are kept",
      NULL,
      "{'model':'m','messages':[{'role':'user','content':'x'}],'tools':[{'type':'function','function':{'name':'f'}}],"
      "'tool_choice':'none'}",
      "{'model':'m','max_tokens':4096,'messages':[{'role':'user','content':[{'type':'text','text':'x'}]}],"
      "'tools':[{'name':'f','input_schema':{'type':'object','properties':{}}}],'tool_choice':{'type':'none'}}" },

    { "named tool_choice becomes type tool, parallel_tool_calls false disables parallel use",
      NULL,
      "{'model':'m','messages':[{'role':'user','content':'x'}],'tools':[{'type':'function','function':{'name':'f'}},"
      "{'type':'function','function':{'name':'g'}}],"
      "'tool_choice':{'type':'function','function':{'name':'g'}},'parallel_tool_calls':false}",
      "{'model':'m','max_tokens':4096,'messages':[{'role':'user','content':[{'type':'text','text':'x'}]}],"
      "'tools':[{'name':'f','input_schema':{'type':'object','properties':{}}},{'name':'g','input_schema':{'type':'object','properties':{}}}],"
      "'tool_choice':{'type':'tool','name':'g','disable_parallel_tool_use':true}}" },

    { "parallel_tool_calls false alone gives auto with parallel use disabled",
      NULL,
      "{'model':'m','messages':[{'role':'user','content':'x'}],'tools':[{'type':'function','function':{'name':'f'}}],"
      "'tool_choice':'auto','parallel_tool_calls':false}",
      "{'model':'m','max_tokens':4096,'messages':[{'role':'user','content':[{'type':'text','text':'x'}]}],"
      "'tools':[{'name':'f','input_schema':{'type':'object','properties':{}}}],"
      "'tool_choice':{'type':'auto','disable_parallel_tool_use':true}}" },

    { "legacy functions and function_call",
      NULL,
      "{'model':'m','messages':[{'role':'user','content':'x'}],'functions':[{'name':'f','parameters':{'type':'object'}}],"
      "'function_call':{'name':'f'}}",
      "{'model':'m','max_tokens':4096,'messages':[{'role':'user','content':[{'type':'text','text':'x'}]}],"
      "'tools':[{'name':'f','input_schema':{'type':'object'}}],'tool_choice':{'type':'tool','name':'f'}}" },

    { "assistant tool_calls become tool_use, consecutive tool results and the next user message share one turn",
      NULL,
      "{'model':'m','messages':["
      "{'role':'user','content':'Weather in Paris and Rome?'},"
      "{'role':'assistant','content':'','tool_calls':["
      "{'id':'call_1','type':'function','function':{'name':'get_weather','arguments':'{\\'city\\':\\'Paris\\'}'}},"
      "{'id':'call_2','type':'function','function':{'name':'get_weather','arguments':'{\\'city\\':\\'Rome\\',\\'n\\':[1,2.5]}'}}]},"
      "{'role':'tool','tool_call_id':'call_1','content':'18C'},"
      "{'role':'tool','tool_call_id':'call_2','content':[{'type':'text','text':'21C'}]},"
      "{'role':'user','content':'Thanks. Which is warmer?'}],"
      "'tools':[{'type':'function','function':{'name':'get_weather','parameters':{'type':'object'}}}]}",
      "{'model':'m','max_tokens':4096,'messages':["
      "{'role':'user','content':[{'type':'text','text':'Weather in Paris and Rome?'}]},"
      "{'role':'assistant','content':["
      "{'type':'tool_use','id':'call_1','name':'get_weather','input':{'city':'Paris'}},"
      "{'type':'tool_use','id':'call_2','name':'get_weather','input':{'city':'Rome','n':[1,2.5]}}]},"
      "{'role':'user','content':["
      "{'type':'tool_result','tool_use_id':'call_1','content':[{'type':'text','text':'18C'}]},"
      "{'type':'tool_result','tool_use_id':'call_2','content':[{'type':'text','text':'21C'}]},"
      "{'type':'text','text':'Thanks. Which is warmer?'}]}],"
      "'tools':[{'name':'get_weather','input_schema':{'type':'object'}}]}" },

    { "tool results go first in a user turn even when user text came before them; empty arguments are {}",
      NULL,
      "{'model':'m','messages':["
      "{'role':'assistant','content':null,'tool_calls':[{'id':'c1','type':'function','function':{'name':'f','arguments':''}}]},"
      "{'role':'user','content':'note'},"
      "{'role':'tool','tool_call_id':'c1','content':''}]}",
      "{'model':'m','max_tokens':4096,'messages':["
      "{'role':'assistant','content':[{'type':'tool_use','id':'c1','name':'f','input':{}}]},"
      "{'role':'user','content':[{'type':'tool_result','tool_use_id':'c1'},{'type':'text','text':'note'}]}]}" },

    { "tool ids with characters Claude refuses are rewritten the same way on both sides",
      NULL,
      "{'model':'m','messages':["
      "{'role':'assistant','tool_calls':[{'id':'functions.f:0','type':'function','function':{'name':'f','arguments':'{}'}}]},"
      "{'role':'tool','tool_call_id':'functions.f:0','content':'ok'}]}",
      "{'model':'m','max_tokens':4096,'messages':["
      "{'role':'assistant','content':[{'type':'tool_use','id':'functions_f_0','name':'f','input':{}}]},"
      "{'role':'user','content':[{'type':'tool_result','tool_use_id':'functions_f_0','content':[{'type':'text','text':'ok'}]}]}]}" },

    { "legacy function_call and function role messages pair up",
      NULL,
      "{'model':'m','messages':["
      "{'role':'user','content':'x'},"
      "{'role':'assistant','content':null,'function_call':{'name':'f','arguments':'{\\'a\\':1}'}},"
      "{'role':'function','name':'f','content':'done'}]}",
      "{'model':'m','max_tokens':4096,'messages':["
      "{'role':'user','content':[{'type':'text','text':'x'}]},"
      "{'role':'assistant','content':[{'type':'tool_use','id':'call_function_1','name':'f','input':{'a':1}}]},"
      "{'role':'user','content':[{'type':'tool_result','tool_use_id':'call_function_1','content':[{'type':'text','text':'done'}]}]}]}" },

    { "consecutive same-role messages merge; blank text is dropped without splitting the run",
      NULL,
      "{'model':'m','messages':["
      "{'role':'user','content':'a'},{'role':'assistant','content':'  '},{'role':'user','content':[{'type':'text','text':'b'}]},"
      "{'role':'assistant','content':[{'type':'text','text':'c'},{'type':'refusal','refusal':'r'}]},{'role':'assistant','content':'d'}]}",
      "{'model':'m','max_tokens':4096,'messages':["
      "{'role':'user','content':[{'type':'text','text':'a'},{'type':'text','text':'b'}]},"
      "{'role':'assistant','content':[{'type':'text','text':'c'},{'type':'text','text':'r'},{'type':'text','text':'d'}]}]}" },

    { "stop as a string",
      NULL,
      "{'model':'m','messages':[{'role':'user','content':'x'}],'stop':'END'}",
      "{'model':'m','max_tokens':4096,'messages':[{'role':'user','content':[{'type':'text','text':'x'}]}],'stop_sequences':['END']}" },

    { "stop as an array of up to 4, empty ones skipped",
      NULL,
      "{'model':'m','messages':[{'role':'user','content':'x'}],'stop':['a','','b\\n','c']}",
      "{'model':'m','max_tokens':4096,'messages':[{'role':'user','content':[{'type':'text','text':'x'}]}],'stop_sequences':['a','b\\n','c']}" },

    { "temperature above 1 is clamped to 1; top_p 1 next to a temperature is dropped",
      NULL,
      "{'model':'m','messages':[{'role':'user','content':'x'}],'temperature':1.7,'top_p':1}",
      "{'model':'m','max_tokens':4096,'messages':[{'role':'user','content':[{'type':'text','text':'x'}]}],'temperature':1}" },

    { "temperature within 0..1 and top_p below 1 pass unchanged",
      NULL,
      "{'model':'m','messages':[{'role':'user','content':'x'}],'temperature':0.7,'top_p':0.9}",
      "{'model':'m','max_tokens':4096,'messages':[{'role':'user','content':[{'type':'text','text':'x'}]}],'temperature':0.7,'top_p':0.9}" },

    { "max_completion_tokens wins over max_tokens",
      NULL,
      "{'model':'m','messages':[{'role':'user','content':'x'}],'max_tokens':100,'max_completion_tokens':200}",
      "{'model':'m','max_tokens':200,'messages':[{'role':'user','content':[{'type':'text','text':'x'}]}]}" },

    { "user becomes metadata.user_id, stream is kept, ignored fields vanish",
      NULL,
      "{'model':'m','messages':[{'role':'user','content':'x','name':'bob'}],'user':'u-42','stream':true,"
      "'stream_options':{'include_usage':true},'seed':7,'frequency_penalty':0.5,'presence_penalty':0.1,"
      "'store':false,'metadata':{'k':'v'},'service_tier':'auto','prediction':{'type':'content','content':'x'},"
      "'n':1,'logprobs':false,'top_logprobs':0,'logit_bias':{},'modalities':['text'],'audio':null,"
      "'some_future_field':{'x':1},'response_format':{'type':'json_object'}}",
      "{'model':'m','max_tokens':4096,'messages':[{'role':'user','content':[{'type':'text','text':'x'}]}],"
      "'metadata':{'user_id':'u-42'},'stream':true}" },

    { "reasoning_effort minimal becomes output_config effort low",
      NULL,
      "{'model':'m','messages':[{'role':'user','content':'x'}],'reasoning_effort':'minimal'}",
      "{'model':'m','max_tokens':4096,'messages':[{'role':'user','content':[{'type':'text','text':'x'}]}],"
      "'output_config':{'effort':'low'}}" },

    { "strict json_schema (OpenAI SDK parse, LangChain, Vercel AI SDK) becomes output_config.format",
      NULL,
      "{'model':'m','messages':[{'role':'user','content':'x'}],"
      "'response_format':{'type':'json_schema','json_schema':{'name':'r','strict':true,'schema':{'type':'object',"
      "'properties':{'a':{'type':'integer'}},'required':['a'],'additionalProperties':false}}}}",
      "{'model':'m','max_tokens':4096,'messages':[{'role':'user','content':[{'type':'text','text':'x'}]}],"
      "'output_config':{'format':{'type':'json_schema','schema':{'type':'object','properties':{'a':{'type':'integer'}},"
      "'required':['a'],'additionalProperties':false}}}}" },

    { "nested repeated members are left to the upstream; max_tokens at the cap passes",
      NULL,
      "{'model':'m','max_tokens':1000000,'messages':[{'role':'user','content':'x','content':'y'}]}",
      "{'model':'m','max_tokens':1000000,'messages':[{'role':'user','content':[{'type':'text','text':'y'}]}]}" },

    { "reasoning_effort high and a non-strict json_schema share output_config",
      NULL,
      "{'model':'m','messages':[{'role':'user','content':'x'}],'reasoning_effort':'high',"
      "'response_format':{'type':'json_schema','json_schema':{'name':'r','schema':{'type':'object','properties':{'a':{'type':'integer'}}}}}}",
      "{'model':'m','max_tokens':4096,'messages':[{'role':'user','content':[{'type':'text','text':'x'}]}],"
      "'output_config':{'effort':'high','format':{'type':'json_schema','schema':{'type':'object','properties':{'a':{'type':'integer'}}}}}}" },
};

START_TEST(request_converts_as_claude_expects)
{
    const struct ok_case *t = &OK_CASES[_i];
    char *map = t->map ? q(t->map) : NULL;
    struct ars_openai_opts opts = { map, 0, 0 };
    struct conv c;
    convert(&c, t->request, &opts);
    ck_assert_msg(c.rc == ARS_OK, "%s: rc %d: %s", t->name, c.rc, c.err);
    assert_json(c.out.data, c.out.len, t->claude);
    conv_done(&c);
    free(map);
}
END_TEST

START_TEST(meta_reports_model_names_stream_usage_and_tools)
{
    struct ars_openai_opts opts = { "{\"gpt-4o\":\"claude-sonnet-4-5\"}", 1234, 1 };
    struct conv c;
    convert(&c, "{'model':'gpt-4o','messages':[{'role':'user','content':'x'}],'stream':true,"
                "'stream_options':{'include_usage':true},"
                "'tools':[{'type':'function','function':{'name':'a'}}],'functions':[{'name':'b'}]}", &opts);
    ck_assert_int_eq(c.rc, ARS_OK);
    ck_assert_str_eq(c.meta.model, "gpt-4o");
    ck_assert_str_eq(c.meta.claude_model, "claude-sonnet-4-5");
    ck_assert_int_eq(c.meta.stream, 1);
    ck_assert_int_eq(c.meta.include_usage, 1);
    ck_assert_int_eq(c.meta.n_tools, 2);
    ck_assert_int_eq(c.meta.show_thinking, 1);
    ck_assert_ptr_nonnull(strstr(c.out.data, "\"max_tokens\":1234"));   /* the configured default */
    conv_done(&c);

    convert(&c, "{'model':'m','messages':[{'role':'user','content':'x'}],'stream_options':{'include_usage':true}}", NULL);
    ck_assert_int_eq(c.rc, ARS_OK);
    ck_assert_int_eq(c.meta.stream, 0);
    ck_assert_int_eq(c.meta.include_usage, 0);     /* meaningless without stream */
    conv_done(&c);
}
END_TEST

START_TEST(same_request_gives_the_same_bytes)
{
    const char *req = "{'model':'m','messages':[{'role':'system','content':'s'},{'role':'user','content':'x'}],"
                      "'tools':[{'type':'function','function':{'name':'f','parameters':{'type':'object','b':1,'a':2}}}]}";
    struct conv a, b;
    convert(&a, req, NULL);
    convert(&b, req, NULL);
    ck_assert_int_eq(a.rc, ARS_OK);
    ck_assert_uint_eq(a.out.len, b.out.len);
    ck_assert_mem_eq(a.out.data, b.out.data, a.out.len);
    conv_done(&a);
    conv_done(&b);
}
END_TEST

/* ---- request conversion: refused ---------------------------------------------- */

struct bad_case {
    const char *request;
    const char *error;         /* errbuf starts with this */
};

static const struct bad_case BAD_CASES[] = {
    { "not json", "body: not valid JSON" },
    { "[1,2]", "body: must be a JSON object (got array)" },
    { "{'model':'m','messages':[{'role':'user','content':'x'}]} trailing", "body: not valid JSON" },
    { "{'model':'m','messages':[{'role':'user','content':'x'}],'temperature':NaN}", "body: not valid JSON (NaN or Infinity)" },
    { "{'messages':[{'role':'user','content':'x'}]}", "model: is required" },
    { "{'model':5,'messages':[]}", "model: must be a string (got number)" },
    { "{'model':'m'}", "messages: is required" },
    { "{'model':'m','messages':{'role':'user','content':'x'}}", "messages: must be an array (got object)" },
    { "{'model':'m','messages':[]}", "messages: must not be empty" },
    { "{'model':'m','messages':[{'role':'system','content':'only system'}]}", "messages: no user or assistant message with content" },
    { "{'model':'m','messages':['hi']}", "messages[0]: must be an object (got string)" },
    { "{'model':'m','messages':[{'content':'x'}]}", "messages[0].role: is required" },
    { "{'model':'m','messages':[{'role':'user','content':'x'},{'role':'robot','content':'x'}]}",
      "messages[1].role: unknown role \"robot\" (expected system, developer, user, assistant or tool)" },
    { "{'model':'m','messages':[{'role':'user','content':42}]}",
      "messages[0].content: must be a string or an array of content parts (got number)" },
    { "{'model':'m','messages':[{'role':'user'}]}", "messages[0].content: is required" },
    { "{'model':'m','messages':[{'role':'user','content':[{'type':'text','text':7}]}]}",
      "messages[0].content[0].text: must be a string (got number)" },
    { "{'model':'m','messages':[{'role':'system','content':[{'type':'image_url','image_url':{'url':'https://x/y.png'}}]}]}",
      "messages[0].content[0].type: \"image_url\" parts are not accepted here (expected text)" },
    { "{'model':'m','messages':[{'role':'user','content':[{'type':'input_audio','input_audio':{}}]}]}",
      "messages[0].content[0].type: audio input is not supported" },
    { "{'model':'m','messages':[{'role':'user','content':[{'type':'text','text':'x'},"
      "{'type':'image_url','image_url':{'url':'data:image/bmp;base64,Qk0='}}]}]}",
      "messages[0].content[1].image_url.url: unsupported image type \"image/bmp\" "
      "(Claude accepts image/jpeg, image/png, image/gif and image/webp)" },
    { "{'model':'m','messages':[{'role':'user','content':[{'type':'image_url','image_url':{'url':'data:image/png,abc'}}]}]}",
      "messages[0].content[0].image_url.url: the data: URL must be base64-encoded" },
    { "{'model':'m','messages':[{'role':'user','content':[{'type':'image_url','image_url':{'url':'data:image/png;base64,a b'}}]}]}",
      "messages[0].content[0].image_url.url: the image data is not valid base64" },
    { "{'model':'m','messages':[{'role':'user','content':[{'type':'image_url','image_url':{'url':'data:image/png;base64,iVBORw0KGgo'}}]}]}",
      "messages[0].content[0].image_url.url: the image data is not valid base64" },
    { "{'model':'m','messages':[{'role':'user','content':[{'type':'image_url','image_url':{'url':'data:image/png;base64,iV=BORw0KGgo'}}]}]}",
      "messages[0].content[0].image_url.url: the image data is not valid base64" },
    { "{'model':'m','messages':[{'role':'user','content':[{'type':'text','text':'x'},{'type':'image_url','image_url':{'url':'data:image/png;base64,===='}}]}]}",
      "messages[0].content[1].image_url.url: the image data is not valid base64" },
    { "{'model':'m','messages':[{'role':'user','content':[{'type':'image_url','image_url':{'url':'ftp://x/y.png'}}]}]}",
      "messages[0].content[0].image_url.url: must be a data: URL" },
    { "{'model':'m','messages':[{'role':'user','content':[{'type':'image_url'}]}]}",
      "messages[0].content[0].image_url: must be an object with a \"url\" (got null)" },
    { "{'model':'m','messages':[{'role':'user','content':'x'},{'role':'assistant','tool_calls':"
      "[{'id':'c','type':'function','function':{'name':'f','arguments':'{city: Paris}'}}]}]}",
      "messages[1].tool_calls[0].function.arguments: not valid JSON" },
    { "{'model':'m','messages':[{'role':'assistant','tool_calls':"
      "[{'id':'c','type':'function','function':{'name':'f','arguments':'[1]'}}]}]}",
      "messages[0].tool_calls[0].function.arguments: must be a JSON object (got array)" },
    { "{'model':'m','messages':[{'role':'assistant','tool_calls':[{'type':'function','function':{'name':'f'}}]}]}",
      "messages[0].tool_calls[0].id: is required" },
    { "{'model':'m','messages':[{'role':'tool','content':'x'}]}", "messages[0].tool_call_id: is required" },
    { "{'model':'m','messages':[{'role':'function','name':'f','content':'x'}]}",
      "messages[0]: a \"function\" message must follow an assistant function_call" },
    { "{'model':'m','messages':[{'role':'user','content':'x'}],'n':2}",
      "n: only n = 1 is supported (Claude returns one choice per request)" },
    { "{'model':'m','messages':[{'role':'user','content':'x'}],'logprobs':true}",
      "logprobs: log probabilities are not supported" },
    { "{'model':'m','messages':[{'role':'user','content':'x'}],'top_logprobs':3}",
      "top_logprobs: log probabilities are not supported" },
    { "{'model':'m','messages':[{'role':'user','content':'x'}],'logit_bias':{'50256':-100}}",
      "logit_bias: token biasing is not supported" },
    { "{'model':'m','messages':[{'role':'user','content':'x'}],'audio':{'voice':'alloy','format':'wav'}}",
      "audio: audio output is not supported" },
    { "{'model':'m','messages':[{'role':'user','content':'x'}],'modalities':['text','audio']}",
      "modalities[1]: only \"text\" output is supported" },
    { "{'model':'m','messages':[{'role':'user','content':'x'}],'web_search_options':{}}",
      "web_search_options: web search is not supported" },
    { "{'model':'m','messages':[{'role':'user','content':'x'}],"
      "'response_format':{'type':'json_schema','json_schema':{'name':'r','strict':'yes','schema':{'type':'object'}}}}",
      "response_format.json_schema.strict: must be a boolean (got string)" },
    { "{'model':'m','messages':[{'role':'user','content':'x'}],'response_format':{'type':'yaml'}}",
      "response_format.type: must be \"text\", \"json_object\" or \"json_schema\"" },
    { "{'model':'m','messages':[{'role':'user','content':'x'}],'stop':['a','b','c','d','e']}",
      "stop: at most 4 stop sequences" },
    { "{'model':'m','messages':[{'role':'user','content':'x'}],'stop':5}",
      "stop: must be a string or an array of strings (got number)" },
    { "{'model':'m','messages':[{'role':'user','content':'x'}],'temperature':2.5}",
      "temperature: must be a number from 0 to 2" },
    { "{'model':'m','messages':[{'role':'user','content':'x'}],'top_p':'high'}", "top_p: must be a number from 0 to 1" },
    { "{'model':'m','messages':[{'role':'user','content':'x'}],'max_tokens':0}",
      "max_tokens: must be an integer from 1 to 1000000" },
    { "{'model':'m','messages':[{'role':'user','content':'x'}],'max_tokens':1000001}",
      "max_tokens: must be an integer from 1 to 1000000" },
    { "{'model':'m','messages':[{'role':'user','content':'x'}],'max_completion_tokens':99999999999999999999}",
      "max_completion_tokens: must be an integer from 1 to 1000000" },
    { "{'model':'m','messages':[{'role':'user','content':'x'}],'max_completion_tokens':-5}",
      "max_completion_tokens: must be an integer from 1 to 1000000" },
    { "{'model':'claude-opus-4-1','model':'claude-haiku-4-5','messages':[{'role':'user','content':'x'}]}",
      "body: request body repeats the top-level member \"model\"" },
    { "{'model':'m','messages':[{'role':'user','content':'x'}],'stream':true,'str\\u0065am':false}",
      "body: request body repeats the top-level member \"stream\"" },
    { "{'model':'m','messages':[{'role':'user','content':'x'}],'max_completion_tokens':'9'}",
      "max_completion_tokens: must be an integer (got string)" },
    { "{'model':'m','messages':[{'role':'user','content':'x'}],'reasoning_effort':'extreme'}",
      "reasoning_effort: must be one of" },
    { "{'model':'m','messages':[{'role':'user','content':'x'}],'tools':[{'type':'function','function':{'name':'f'}}],"
      "'tool_choice':{'type':'function','function':{'name':'g'}}}",
      "tool_choice.function.name: no tool named \"g\" in tools" },
    { "{'model':'m','messages':[{'role':'user','content':'x'}],'tool_choice':'required'}",
      "tool_choice: \"required\" needs tools" },
    { "{'model':'m','messages':[{'role':'user','content':'x'}],'tools':[{'type':'code_interpreter'}]}",
      "tools[0].type: only \"function\" tools are supported" },
    { "{'model':'m','messages':[{'role':'user','content':'x'}],'tools':[{'type':'function','function':{'name':'a b'}}]}",
      "tools[0].function.name: \"a b\" is not a valid tool name" },
    { "{'model':'m','messages':[{'role':'user','content':'x'}],'tools':[{'type':'function','function':{'name':'f'}},"
      "{'type':'function','function':{'name':'f'}}]}",
      "tools[1].function.name: duplicate tool name \"f\"" },
    { "{'model':'m','messages':[{'role':'user','content':'x'}],'tools':[{'type':'function','function':{'name':'f','parameters':'{}'}}]}",
      "tools[0].function.parameters: must be a JSON Schema object (got string)" },
    { "{'model':'m','messages':[{'role':'user','content':'x'}],'stream':'yes'}", "stream: must be a boolean (got string)" },
};

START_TEST(bad_request_is_refused_naming_the_field)
{
    const struct bad_case *t = &BAD_CASES[_i];
    struct conv c;
    convert(&c, t->request, NULL);
    ck_assert_msg(c.rc == ARS_ERR_INVALID, "%s: rc %d, out %s", t->request, c.rc, c.out.data ? c.out.data : "");
    char *want = q(t->error);
    ck_assert_msg(strncmp(c.err, want, strlen(want)) == 0, "\n got: %s\nwant: %s...", c.err, want);
    ck_assert_uint_eq(c.out.len, 0);          /* nothing half-written */
    free(want);
    conv_done(&c);
}
END_TEST

/* A request of `count` messages (or parts, or tools) of the given shape. */
static char *repeated(const char *head, const char *item, size_t count, const char *tail)
{
    size_t n = strlen(head) + (strlen(item) + 1) * count + strlen(tail) + 1;
    char *s = malloc(n);
    ck_assert_ptr_nonnull(s);
    size_t len = 0;
    len += (size_t)snprintf(s + len, n - len, "%s", head);
    for (size_t i = 0; i < count; i++)
        len += (size_t)snprintf(s + len, n - len, "%s%s", i ? "," : "", item);
    snprintf(s + len, n - len, "%s", tail);
    return s;
}

START_TEST(caps_on_messages_parts_tools_and_depth_are_enforced)
{
    static const struct {
        const char *head, *item, *tail;
        size_t at_cap;
        const char *error;
    } caps[] = {
        { "{'model':'m','messages':[", "{'role':'user','content':'x'}", "]}", ARS_OPENAI_MAX_MESSAGES,
          "messages: more than 10000 messages" },
        { "{'model':'m','messages':[{'role':'user','content':[", "{'type':'text','text':'x'}", "]}]}",
          ARS_OPENAI_MAX_PARTS, "messages[0].content: more than 1000 content parts" },
        { "{'model':'m','messages':[{'role':'user','content':'x'}],'functions':[", "{'name':'f'}", "]}",
          ARS_OPENAI_MAX_TOOLS, "functions: more than 500 tools" },
    };
    for (size_t k = 0; k < sizeof(caps) / sizeof(caps[0]); k++) {
        for (size_t extra = 0; extra < 2; extra++) {
            char *req = repeated(caps[k].head, caps[k].item, caps[k].at_cap + extra, caps[k].tail);
            struct conv c;
            convert(&c, req, NULL);
            if (extra) {
                ck_assert_int_eq(c.rc, ARS_ERR_INVALID);
                ck_assert_str_eq(c.err, caps[k].error);
            } else {
                /* at the cap: accepted, or refused for something else (the
                 * 500 functions all share a name) */
                ck_assert_msg(c.rc == ARS_OK || strstr(c.err, "duplicate"), "%s", c.err);
            }
            conv_done(&c);
            free(req);
        }
    }

    /* 64 levels of nesting pass, 65 do not */
    for (int depth = 64; depth <= 65; depth++) {
        char req[1024];
        int len = snprintf(req, sizeof(req), "{'model':'m','messages':[{'role':'user','content':'x'}],'x':");
        for (int i = 0; i < depth - 1; i++)
            req[len++] = '[';
        for (int i = 0; i < depth - 1; i++)
            req[len++] = ']';
        snprintf(req + len, sizeof(req) - (size_t)len, "}");
        struct conv c;
        convert(&c, req, NULL);
        if (depth == 64) {
            ck_assert_msg(c.rc == ARS_OK, "%s", c.err);
        } else {
            ck_assert_int_eq(c.rc, ARS_ERR_INVALID);
            ck_assert_str_eq(c.err, "body: JSON nested deeper than 64 levels");
        }
        conv_done(&c);
    }
}
END_TEST

START_TEST(converted_body_over_the_buffer_cap_is_toobig_and_out_is_untouched)
{
    struct ars_openai_meta meta;
    char err[256];
    struct ars_buf out;
    ars_buf_init(&out, 64);
    ck_assert_int_eq(ars_buf_adds(&out, "keep"), ARS_OK);
    char *req = q("{'model':'m','messages':[{'role':'user','content':'a long enough message to pass sixty-four bytes'}]}");
    ck_assert_int_eq(ars_openai_to_claude(req, strlen(req), NULL, &out, &meta, err, sizeof(err)), ARS_ERR_TOOBIG);
    ck_assert_uint_eq(out.len, 4);
    ck_assert_str_eq(out.data, "keep");
    free(req);
    ars_buf_deinit(&out);
}
END_TEST

/* ---- non-stream responses ---------------------------------------------------- */

static const struct ars_openai_meta META = { "gpt-4o", "claude-sonnet-4-5", 0, 0, 0, 0 };

static void response(const char *claude_q, const struct ars_openai_meta *meta, struct ars_buf *out)
{
    char *body = q(claude_q);
    ars_buf_init(out, BUF_CAP);
    ck_assert_int_eq(ars_claude_to_openai_response(body, strlen(body), meta, 1700000000, "req123", out), ARS_OK);
    free(body);
}

START_TEST(text_response_becomes_a_chat_completion)
{
    struct ars_buf out;
    response("{'id':'msg_1','type':'message','role':'assistant','model':'claude-sonnet-4-5',"
             "'content':[{'type':'text','text':'Hello'},{'type':'text','text':' world'}],"
             "'stop_reason':'end_turn','stop_sequence':null,'usage':{'input_tokens':10,'output_tokens':5}}", &META, &out);
    assert_json(out.data, out.len,
                "{'id':'chatcmpl-req123','object':'chat.completion','created':1700000000,'model':'gpt-4o',"
                "'choices':[{'index':0,'message':{'role':'assistant','content':'Hello world','refusal':null},"
                "'logprobs':null,'finish_reason':'stop'}],"
                "'usage':{'prompt_tokens':10,'completion_tokens':5,'total_tokens':15,'prompt_tokens_details':{'cached_tokens':0}}}");
    ars_buf_deinit(&out);
}
END_TEST

START_TEST(tool_use_response_gives_tool_calls_whose_arguments_parse_back_to_the_input)
{
    struct ars_buf out;
    response("{'id':'msg_2','type':'message','role':'assistant','content':["
             "{'type':'tool_use','id':'toolu_1','name':'get_weather','input':{'city':'Paris','days':[1,2],'deep':{'x':null,'y':1.5}}}],"
             "'stop_reason':'tool_use','usage':{'input_tokens':1,'output_tokens':2}}", &META, &out);
    struct json_object *r = parse(out.data, out.len);
    struct json_object *choice = json_object_array_get_idx(json_object_object_get(r, "choices"), 0);
    struct json_object *msg = json_object_object_get(choice, "message");
    ck_assert(json_object_is_type(json_object_object_get(msg, "content"), json_type_null));
    ck_assert_str_eq(json_object_get_string(json_object_object_get(choice, "finish_reason")), "tool_calls");
    struct json_object *call = json_object_array_get_idx(json_object_object_get(msg, "tool_calls"), 0);
    ck_assert_str_eq(json_object_get_string(json_object_object_get(call, "id")), "toolu_1");
    ck_assert_str_eq(json_object_get_string(json_object_object_get(call, "type")), "function");
    struct json_object *fn = json_object_object_get(call, "function");
    ck_assert_str_eq(json_object_get_string(json_object_object_get(fn, "name")), "get_weather");
    struct json_object *args = json_object_object_get(fn, "arguments");
    ck_assert(json_object_is_type(args, json_type_string));
    const char *as = json_object_get_string(args);
    struct json_object *parsed = parse(as, strlen(as));
    char *want = q("{'city':'Paris','days':[1,2],'deep':{'x':null,'y':1.5}}");
    struct json_object *w = parse(want, strlen(want));
    ck_assert(json_object_equal(parsed, w));
    json_object_put(w);
    json_object_put(parsed);
    json_object_put(r);
    free(want);
    ars_buf_deinit(&out);
}
END_TEST

START_TEST(every_stop_reason_maps_to_its_finish_reason)
{
    static const struct { const char *stop, *finish; } map[] = {
        { "end_turn", "stop" }, { "stop_sequence", "stop" }, { "pause_turn", "stop" },
        { "max_tokens", "length" }, { "model_context_window_exceeded", "length" },
        { "tool_use", "tool_calls" }, { "refusal", "content_filter" }, { "something_new", "stop" },
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        char body[256];
        snprintf(body, sizeof(body), "{'type':'message','content':[{'type':'text','text':'x'}],'stop_reason':'%s'}",
                 map[i].stop);
        struct ars_buf out;
        response(body, &META, &out);
        char want[64];
        snprintf(want, sizeof(want), "\"finish_reason\":\"%s\"", map[i].finish);
        ck_assert_msg(strstr(out.data, want), "%s: %s", map[i].stop, out.data);
        ars_buf_deinit(&out);
        ck_assert_str_eq(ars_openai_finish_reason(map[i].stop, strlen(map[i].stop)), map[i].finish);
    }
    ck_assert_str_eq(ars_openai_finish_reason(NULL, 0), "stop");
}
END_TEST

START_TEST(usage_counts_cache_reads_and_writes_in_prompt_tokens)
{
    struct ars_buf out;
    response("{'type':'message','content':[{'type':'text','text':'x'}],'stop_reason':'end_turn',"
             "'usage':{'input_tokens':100,'cache_read_input_tokens':1000,'cache_creation_input_tokens':50,"
             "'cache_creation':{'ephemeral_5m_input_tokens':20,'ephemeral_1h_input_tokens':30},'output_tokens':7}}",
             &META, &out);
    ck_assert_ptr_nonnull(strstr(out.data, "\"usage\":{\"prompt_tokens\":1150,\"completion_tokens\":7,"
                                           "\"total_tokens\":1157,\"prompt_tokens_details\":{\"cached_tokens\":1000}}"));
    ars_buf_deinit(&out);
}
END_TEST

START_TEST(thinking_is_hidden_by_default_and_shown_as_reasoning_content_when_enabled)
{
    const char *body = "{'type':'message','content':[{'type':'thinking','thinking':'Let me think','signature':'sig'},"
                       "{'type':'redacted_thinking','data':'xx'},{'type':'text','text':'42'}],'stop_reason':'end_turn'}";
    struct ars_buf out;
    response(body, &META, &out);
    ck_assert_ptr_null(strstr(out.data, "reasoning_content"));
    ck_assert_ptr_null(strstr(out.data, "Let me think"));
    ck_assert_ptr_nonnull(strstr(out.data, "\"content\":\"42\""));
    ars_buf_deinit(&out);

    struct ars_openai_meta shown = META;
    shown.show_thinking = 1;
    response(body, &shown, &out);
    ck_assert_ptr_nonnull(strstr(out.data, "\"reasoning_content\":\"Let me think\""));
    ars_buf_deinit(&out);
}
END_TEST

START_TEST(non_message_bodies_are_invalid_and_leave_out_alone)
{
    static const char *const bodies[] = {
        "", "not json", "[]", "{'type':'error','error':{'type':'api_error','message':'x'}}", "{'type':'message'}",
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        char *b = q(bodies[i]);
        struct ars_buf out;
        ars_buf_init(&out, 1024);
        ck_assert_int_eq(ars_claude_to_openai_response(b, strlen(b), &META, 1, "x", &out), ARS_ERR_INVALID);
        ck_assert_uint_eq(out.len, 0);
        ars_buf_deinit(&out);
        free(b);
    }
}
END_TEST

/* ---- errors ------------------------------------------------------------------------ */

START_TEST(anthropic_errors_keep_their_message_and_map_their_type)
{
    static const struct { int status; const char *body, *want; } cases[] = {
        { 400, "{'type':'error','error':{'type':'invalid_request_error','message':'max_tokens: too big'}}",
          "{'error':{'message':'max_tokens: too big','type':'invalid_request_error','param':null,'code':'invalid_request'}}" },
        { 401, "{'type':'error','error':{'type':'authentication_error','message':'invalid x-api-key'}}",
          "{'error':{'message':'invalid x-api-key','type':'authentication_error','param':null,'code':'invalid_api_key'}}" },
        { 403, "{'type':'error','error':{'type':'permission_error','message':'no'}}",
          "{'error':{'message':'no','type':'permission_error','param':null,'code':'permission_denied'}}" },
        { 404, "{'type':'error','error':{'type':'not_found_error','message':'model: x'}}",
          "{'error':{'message':'model: x','type':'not_found_error','param':null,'code':'not_found'}}" },
        { 413, "{'type':'error','error':{'type':'request_too_large','message':'big'}}",
          "{'error':{'message':'big','type':'invalid_request_error','param':null,'code':'request_too_large'}}" },
        { 429, "{'type':'error','error':{'type':'rate_limit_error','message':'slow down'}}",
          "{'error':{'message':'slow down','type':'rate_limit_error','param':null,'code':'rate_limit_exceeded'}}" },
        { 500, "{'type':'error','error':{'type':'api_error','message':'oops'}}",
          "{'error':{'message':'oops','type':'server_error','param':null,'code':'server_error'}}" },
        { 529, "{'type':'error','error':{'type':'overloaded_error','message':'Overloaded'}}",
          "{'error':{'message':'Overloaded','type':'server_error','param':null,'code':'overloaded'}}" },
        { 418, "{'type':'error','error':{'type':'brand_new_error','message':'teapot'}}",
          "{'error':{'message':'teapot','type':'invalid_request_error','param':null,'code':'invalid_request'}}" },
        { 502, "<html>Bad Gateway</html>",
          "{'error':{'message':'upstream returned HTTP 502','type':'server_error','param':null,'code':'server_error'}}" },
        { 429, "",
          "{'error':{'message':'upstream returned HTTP 429','type':'rate_limit_error','param':null,'code':'rate_limit_exceeded'}}" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *b = q(cases[i].body);
        struct ars_buf out;
        ars_buf_init(&out, 4096);
        ck_assert_int_eq(ars_claude_error_to_openai(cases[i].status, b, strlen(b), &out), ARS_OK);
        assert_json(out.data, out.len, cases[i].want);
        ars_buf_deinit(&out);
        free(b);
    }
}
END_TEST

/* ---- streams -------------------------------------------------------------------------- */

/* A recorded Messages stream: text, then a tool call, then the end. */
static const char RECORDED[] =
    "event: message_start\n"
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\","
    "\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,"
    "\"usage\":{\"input_tokens\":472,\"cache_creation_input_tokens\":30,\"cache_read_input_tokens\":1200,\"output_tokens\":2}}}\n\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
    "event: ping\n"
    "data: {\"type\": \"ping\"}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Let me check\"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" the weather.\"}}\n\n"
    "event: content_block_stop\n"
    "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01\","
    "\"name\":\"get_weather\",\"input\":{}}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\\\"Paris\\\"}\"}}\n\n"
    "event: content_block_stop\n"
    "data: {\"type\":\"content_block_stop\",\"index\":1}\n\n"
    "event: message_delta\n"
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":89}}\n\n"
    "event: message_stop\n"
    "data: {\"type\":\"message_stop\"}\n\n";

struct stream_run {
    struct ars_openai_stream s;
    struct ars_buf out;
    size_t n_lines;
    char *lines[64];           /* the JSON (or [DONE]) of each data: line */
};

/* Feeds the SSE text through the real parser in pieces of `step` bytes and
 * converts every event; then splits the output into its data: lines. */
static void stream_run(struct stream_run *r, const char *sse, size_t step, const struct ars_openai_meta *meta,
                       int show_thinking)
{
    struct ars_sse_parser p;
    struct ars_sse_event ev;
    memset(r, 0, sizeof(*r));
    ars_sse_init(&p, 0);
    ars_buf_init(&r->out, BUF_CAP);
    ars_openai_stream_init(&r->s, meta, 1700000000, "abc", show_thinking);
    size_t n = strlen(sse);
    for (size_t at = 0; at < n; at += step) {
        size_t k = n - at < step ? n - at : step;
        ck_assert_int_eq(ars_sse_feed(&p, sse + at, k, NULL), ARS_OK);
        while (ars_sse_next(&p, &ev))
            ck_assert_int_eq(ars_openai_stream_event(&r->s, &ev, &r->out), ARS_OK);
    }
    ars_sse_deinit(&p);

    const char *s = r->out.data ? r->out.data : "";
    while (*s) {
        ck_assert_msg(strncmp(s, "data: ", 6) == 0, "not a data line: %s", s);
        const char *end = strstr(s, "\n\n");
        ck_assert_ptr_nonnull(end);
        ck_assert_uint_lt(r->n_lines, 64);
        r->lines[r->n_lines++] = strndup(s + 6, (size_t)(end - s - 6));
        s = end + 2;
    }
}

static void stream_done(struct stream_run *r)
{
    for (size_t i = 0; i < r->n_lines; i++)
        free(r->lines[i]);
    ars_buf_deinit(&r->out);
}

static void assert_line(const struct stream_run *r, size_t i, const char *want_q)
{
    ck_assert_msg(i < r->n_lines, "line %zu of %zu", i, r->n_lines);
    assert_json(r->lines[i], strlen(r->lines[i]), want_q);
}

#define CHUNK(delta, finish) \
    "{'id':'chatcmpl-abc','object':'chat.completion.chunk','created':1700000000,'model':'gpt-4o'," \
    "'choices':[{'index':0,'delta':" delta ",'logprobs':null,'finish_reason':" finish "}]}"
#define CHUNK_U(delta, finish) \
    "{'id':'chatcmpl-abc','object':'chat.completion.chunk','created':1700000000,'model':'gpt-4o'," \
    "'choices':[{'index':0,'delta':" delta ",'logprobs':null,'finish_reason':" finish "}],'usage':null}"

START_TEST(recorded_stream_with_text_and_a_tool_call_becomes_chunks_then_done)
{
    static const size_t steps[] = { 1, 7, sizeof(RECORDED) };
    for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
        struct stream_run r;
        stream_run(&r, RECORDED, steps[k], &META, 0);
        ck_assert_uint_eq(r.n_lines, 8);
        assert_line(&r, 0, CHUNK("{'role':'assistant','content':''}", "null"));
        assert_line(&r, 1, CHUNK("{'content':'Let me check'}", "null"));
        assert_line(&r, 2, CHUNK("{'content':' the weather.'}", "null"));
        assert_line(&r, 3, CHUNK("{'tool_calls':[{'index':0,'id':'toolu_01','type':'function',"
                                 "'function':{'name':'get_weather','arguments':''}}]}", "null"));
        assert_line(&r, 4, CHUNK("{'tool_calls':[{'index':0,'function':{'arguments':'{\\'city\\': '}}]}", "null"));
        assert_line(&r, 5, CHUNK("{'tool_calls':[{'index':0,'function':{'arguments':'\\'Paris\\'}'}}]}", "null"));
        assert_line(&r, 6, CHUNK("{}", "'tool_calls'"));
        ck_assert_str_eq(r.lines[7], "[DONE]");
        ck_assert_int_eq(ars_openai_stream_done(&r.s), 1);
        stream_done(&r);
    }
}
END_TEST

START_TEST(usage_chunk_comes_only_with_include_usage_just_before_done)
{
    struct ars_openai_meta meta = META;
    meta.stream = 1;
    meta.include_usage = 1;
    struct stream_run r;
    stream_run(&r, RECORDED, 13, &meta, 0);
    ck_assert_uint_eq(r.n_lines, 9);
    assert_line(&r, 0, CHUNK_U("{'role':'assistant','content':''}", "null"));
    assert_line(&r, 6, CHUNK_U("{}", "'tool_calls'"));
    assert_line(&r, 7, "{'id':'chatcmpl-abc','object':'chat.completion.chunk','created':1700000000,'model':'gpt-4o',"
                       "'choices':[],'usage':{'prompt_tokens':1702,'completion_tokens':89,'total_tokens':1791,"
                       "'prompt_tokens_details':{'cached_tokens':1200}}}");
    ck_assert_str_eq(r.lines[8], "[DONE]");
    stream_done(&r);
}
END_TEST

START_TEST(second_tool_call_gets_index_1_whatever_the_block_index)
{
    const char *sse =
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":1}}}\n\n"
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":"
        "{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n"
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":"
        "{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"a\",\"input\":{}}}\n\n"
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n"
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":"
        "{\"type\":\"tool_use\",\"id\":\"t2\",\"name\":\"b\",\"input\":{}}}\n\n"
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":"
        "{\"type\":\"input_json_delta\",\"partial_json\":\"{}\"}}\n\n"
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":2}\n\n"
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":3}}\n\n"
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    struct stream_run r;
    stream_run(&r, sse, 1000, &META, 0);
    ck_assert_uint_eq(r.n_lines, 6);
    assert_line(&r, 1, CHUNK("{'tool_calls':[{'index':0,'id':'t1','type':'function','function':{'name':'a','arguments':''}}]}", "null"));
    assert_line(&r, 2, CHUNK("{'tool_calls':[{'index':1,'id':'t2','type':'function','function':{'name':'b','arguments':''}}]}", "null"));
    assert_line(&r, 3, CHUNK("{'tool_calls':[{'index':1,'function':{'arguments':'{}'}}]}", "null"));
    stream_done(&r);
}
END_TEST

static const char THINKING_STREAM[] =
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":1}}}\n\n"
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":"
    "{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n"
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
    "{\"type\":\"thinking_delta\",\"thinking\":\"Hmm, 6 times 7\"}}\n\n"
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
    "{\"type\":\"signature_delta\",\"signature\":\"EqQBCgIYAhIM\"}}\n\n"
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":"
    "{\"type\":\"text\",\"text\":\"\"}}\n\n"
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":"
    "{\"type\":\"text_delta\",\"text\":\"42\"}}\n\n"
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":9}}\n\n"
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

START_TEST(stream_thinking_is_hidden_by_default_and_sent_as_reasoning_content_when_enabled)
{
    struct stream_run r;
    stream_run(&r, THINKING_STREAM, 5, &META, 0);
    ck_assert_uint_eq(r.n_lines, 4);
    assert_line(&r, 1, CHUNK("{'content':'42'}", "null"));
    assert_line(&r, 2, CHUNK("{}", "'stop'"));
    ck_assert_ptr_null(strstr(r.out.data, "6 times 7"));
    ck_assert_ptr_null(strstr(r.out.data, "EqQBCgIYAhIM"));
    stream_done(&r);

    stream_run(&r, THINKING_STREAM, 5, &META, 1);
    ck_assert_uint_eq(r.n_lines, 5);
    assert_line(&r, 1, CHUNK("{'reasoning_content':'Hmm, 6 times 7'}", "null"));
    assert_line(&r, 2, CHUNK("{'content':'42'}", "null"));
    ck_assert_ptr_null(strstr(r.out.data, "EqQBCgIYAhIM"));
    stream_done(&r);
}
END_TEST

START_TEST(error_event_mid_stream_becomes_an_error_chunk_then_done_and_nothing_after)
{
    const char *sse =
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":1}}}\n\n"
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":"
        "{\"type\":\"text\",\"text\":\"\"}}\n\n"
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
        "{\"type\":\"text_delta\",\"text\":\"Hel\"}}\n\n"
        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
        "{\"type\":\"text_delta\",\"text\":\"lo\"}}\n\n"
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    struct stream_run r;
    stream_run(&r, sse, 3, &META, 0);
    ck_assert_uint_eq(r.n_lines, 4);
    assert_line(&r, 1, CHUNK("{'content':'Hel'}", "null"));
    assert_line(&r, 2, "{'error':{'message':'Overloaded','type':'server_error','param':null,'code':'overloaded'}}");
    ck_assert_str_eq(r.lines[3], "[DONE]");
    ck_assert_int_eq(ars_openai_stream_done(&r.s), 1);

    /* an abort after the end adds nothing */
    size_t len = r.out.len;
    ck_assert_int_eq(ars_openai_stream_abort(&r.s, "late", &r.out), ARS_OK);
    ck_assert_uint_eq(r.out.len, len);
    stream_done(&r);
}
END_TEST

START_TEST(abort_mid_stream_sends_an_error_chunk_and_done_once)
{
    const char *sse =
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":1}}}\n\n"
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
        "{\"type\":\"text_delta\",\"text\":\"partial\"}}\n\n";
    struct stream_run r;
    stream_run(&r, sse, 1000, &META, 0);
    ck_assert_uint_eq(r.n_lines, 2);
    ck_assert_int_eq(ars_openai_stream_done(&r.s), 0);
    ck_assert_int_eq(ars_openai_stream_abort(&r.s, "upstream timed out", &r.out), ARS_OK);
    ck_assert_int_eq(ars_openai_stream_done(&r.s), 1);
    static const char tail[] = "data: {\"error\":{\"message\":\"upstream timed out\",\"type\":\"server_error\","
                               "\"param\":null,\"code\":\"server_error\"}}\n\ndata: [DONE]\n\n";
    ck_assert_uint_ge(r.out.len, sizeof(tail) - 1);
    ck_assert_str_eq(r.out.data + r.out.len - (sizeof(tail) - 1), tail);
    size_t len = r.out.len;
    ck_assert_int_eq(ars_openai_stream_abort(&r.s, "again", &r.out), ARS_OK);
    ck_assert_uint_eq(r.out.len, len);
    stream_done(&r);
}
END_TEST

START_TEST(ping_unknown_and_malformed_events_produce_nothing)
{
    struct ars_openai_stream s;
    struct ars_buf out;
    ars_buf_init(&out, 4096);
    ars_openai_stream_init(&s, &META, 1, "x", 0);
#define EV(name, data) { name, data, sizeof(data) - 1 }
    static const struct ars_sse_event evs[] = {
        EV("ping", "{\"type\":\"ping\"}"),
        EV("content_block_delta", "{not json"),
        EV("brand_new_event", "{\"type\":\"brand_new_event\"}"),
        EV("content_block_stop", "{\"type\":\"content_block_stop\",\"index\":0}"),
        EV("message_delta", "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"max_tokens\"}}"),
    };
    for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
        ck_assert_int_eq(ars_openai_stream_event(&s, &evs[i], &out), ARS_OK);
    ck_assert_uint_eq(out.len, 0);

    /* a message_stop with no message_start still gives role, finish, done */
    struct ars_sse_event stop = EV("message_stop", "{\"type\":\"message_stop\"}");
    ck_assert_int_eq(ars_openai_stream_event(&s, &stop, &out), ARS_OK);
    ck_assert_ptr_nonnull(strstr(out.data, "\"role\":\"assistant\""));
    ck_assert_ptr_nonnull(strstr(out.data, "\"finish_reason\":\"length\""));
    ck_assert_ptr_nonnull(strstr(out.data, "data: [DONE]\n\n"));
    ars_buf_deinit(&out);
}
END_TEST

START_TEST(stream_chunk_that_does_not_fit_is_toobig_and_leaves_out_as_it_was)
{
    struct ars_openai_stream s;
    struct ars_buf out;
    ars_buf_init(&out, 300);
    ars_openai_stream_init(&s, &META, 1, "x", 0);
    struct ars_sse_event start = EV("message_start", "{\"type\":\"message_start\",\"message\":{}}");
    ck_assert_int_eq(ars_openai_stream_event(&s, &start, &out), ARS_OK);
    size_t len = out.len;
    char data[512];
    snprintf(data, sizeof(data), "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
             "\"text\":\"%0300d\"}}", 0);
    struct ars_sse_event big = { "content_block_delta", data, strlen(data) };
    ck_assert_int_eq(ars_openai_stream_event(&s, &big, &out), ARS_ERR_TOOBIG);
    ck_assert_uint_eq(out.len, len);
    ars_buf_deinit(&out);
}
END_TEST

/* Test cases a full run makes (check/unit/plan.h). */
#define UNIT_TEST_PLAN 103

int main(void)
{
    Suite *s = suite_create("openai");
    TCase *tc = tcase_create("openai");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, request_converts_as_claude_expects, 0, (int)(sizeof(OK_CASES) / sizeof(OK_CASES[0])));
    tcase_add_test(tc, meta_reports_model_names_stream_usage_and_tools);
    tcase_add_test(tc, same_request_gives_the_same_bytes);
    tcase_add_loop_test(tc, bad_request_is_refused_naming_the_field, 0, (int)(sizeof(BAD_CASES) / sizeof(BAD_CASES[0])));
    tcase_add_test(tc, caps_on_messages_parts_tools_and_depth_are_enforced);
    tcase_add_test(tc, converted_body_over_the_buffer_cap_is_toobig_and_out_is_untouched);
    tcase_add_test(tc, text_response_becomes_a_chat_completion);
    tcase_add_test(tc, tool_use_response_gives_tool_calls_whose_arguments_parse_back_to_the_input);
    tcase_add_test(tc, every_stop_reason_maps_to_its_finish_reason);
    tcase_add_test(tc, usage_counts_cache_reads_and_writes_in_prompt_tokens);
    tcase_add_test(tc, thinking_is_hidden_by_default_and_shown_as_reasoning_content_when_enabled);
    tcase_add_test(tc, non_message_bodies_are_invalid_and_leave_out_alone);
    tcase_add_test(tc, anthropic_errors_keep_their_message_and_map_their_type);
    tcase_add_test(tc, recorded_stream_with_text_and_a_tool_call_becomes_chunks_then_done);
    tcase_add_test(tc, usage_chunk_comes_only_with_include_usage_just_before_done);
    tcase_add_test(tc, second_tool_call_gets_index_1_whatever_the_block_index);
    tcase_add_test(tc, stream_thinking_is_hidden_by_default_and_sent_as_reasoning_content_when_enabled);
    tcase_add_test(tc, error_event_mid_stream_becomes_an_error_chunk_then_done_and_nothing_after);
    tcase_add_test(tc, abort_mid_stream_sends_an_error_chunk_and_done_once);
    tcase_add_test(tc, ping_unknown_and_malformed_events_produce_nothing);
    tcase_add_test(tc, stream_chunk_that_does_not_fit_is_toobig_and_leaves_out_as_it_was);
    suite_add_tcase(s, tc);
    return ars_check_run(s, UNIT_TEST_PLAN);
}
