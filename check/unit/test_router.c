/* Router matching, and the dispatcher end to end over in-memory I/O:
 * 404/405 shapes, 413 in the route's API shape, HEAD, test-only routes. */
#include <check.h>
#include "plan.h"
#include <stdio.h>
#include <json.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "memio.h"
#include "response.h"
#include "router.h"
#include "worker.h"

static void ok_handler(struct ars_request *req)
{
    const char *id = ars_request_param(req, "id");
    char *body = ars_arena_printf(req->arena, "{\"id\":\"%s\",\"body\":%zu}", id ? id : "", req->body->len);
    ars_resp_send(req, 200, "application/json", body, strlen(body));
}

static void silent_handler(struct ars_request *req)
{
    (void)req;
}

static const struct ars_route table[] = {
    { "GET", "/health", ok_handler, ARS_SHAPE_PLAIN, ARS_ROUTE_NO_BODY },
    { "POST", "/api/v1/messages", ok_handler, ARS_SHAPE_ANTHROPIC, 0 },
    { "POST", "/openai/v1/chat/completions", ok_handler, ARS_SHAPE_OPENAI, 0 },
    { "GET", "/admin/api/keys/:id", ok_handler, ARS_SHAPE_PLAIN, 0 },
    { "DELETE", "/admin/api/keys/:id", ok_handler, ARS_SHAPE_PLAIN, 0 },
    { "GET", "/_test/x", ok_handler, ARS_SHAPE_PLAIN, ARS_ROUTE_TEST_ONLY },
    { "GET", "/silent", silent_handler, ARS_SHAPE_PLAIN, 0 },
};
static const struct ars_server server = { -1, table, sizeof(table) / sizeof(table[0]) };

static struct ars_worker worker;
static struct memio mio;

static void install_config(const char *max_bytes, const char *test_routes)
{
    char mb[64], tr[64];
    snprintf(mb, sizeof(mb), "REQUEST_MAX_BYTES=%s", max_bytes);
    snprintf(tr, sizeof(tr), "ENABLE_TEST_ROUTES=%s", test_routes);
    char *env[] = { "JWT_SECRET=0123456789abcdef0123456789abcdef0123",
                    "ENCRYPTION_KEY=0123456789abcdef0123456789abcdef", mb, tr, NULL };
    struct ars_config *cfg;
    char err[256];
    ck_assert_int_eq(ars_config_load(NULL, 0, env, &cfg, err, sizeof(err)), ARS_OK);
    ars_config_install(cfg);
}

static void setup(void)
{
    ars_log_setup(ARS_LOG_ERROR, ARS_LOG_LOGFMT);   /* keep the access log out of test output */
    install_config("1024", "false");
    ck_assert_int_eq(ars_worker_init(&worker, 0), 0);
}

static void teardown(void)
{
    ars_worker_deinit(&worker);
    ars_buf_deinit(&mio.out);
    ars_config_release_all();
}

/* Runs one request; returns the parsed JSON body (caller puts it). */
static json_object *run(const char *method, const char *uri, const char *body)
{
    static char m[64], u[512], cl[64];
    snprintf(m, sizeof(m), "REQUEST_METHOD=%s", method);
    snprintf(u, sizeof(u), "REQUEST_URI=%s", uri);
    snprintf(cl, sizeof(cl), "CONTENT_LENGTH=%zu", body ? strlen(body) : 0);
    char *envp[] = { m, u, cl, NULL };
    ars_buf_deinit(&mio.out);
    memio_init(&mio, body ? body : "", body ? strlen(body) : 0);
    ars_worker_handle(&worker, &server, envp, memio_io(&mio));
    ars_arena_reset(&worker.arena);
    return json_tokener_parse(memio_body(&mio));
}

static const char *status_line(void)
{
    static char line[64];
    const char *end = strstr(mio.out.data, "\r\n");
    size_t n = end ? (size_t)(end - mio.out.data) : 0;
    if (n >= sizeof(line))
        n = sizeof(line) - 1;
    memcpy(line, mio.out.data, n);
    line[n] = '\0';
    return line;
}

START_TEST(matches_literal_and_parameter_routes)
{
    json_object *o = run("GET", "/admin/api/keys/key%2D42", NULL);
    ck_assert_str_eq(status_line(), "Status: 200 OK");
    ck_assert_str_eq(json_member_str(o, "id", NULL), "key-42");
    json_object_put(o);
    o = run("DELETE", "/admin/api/keys/7", NULL);
    ck_assert_str_eq(json_member_str(o, "id", NULL), "7");
    json_object_put(o);
}
END_TEST

START_TEST(query_string_does_not_affect_routing)
{
    json_object *o = run("POST", "/api/v1/messages?beta=true", "{}");
    ck_assert_str_eq(status_line(), "Status: 200 OK");
    json_object_put(o);
}
END_TEST

START_TEST(unknown_route_is_404_in_anthropic_shape)
{
    json_object *o = run("GET", "/nope", NULL);
    ck_assert_str_eq(status_line(), "Status: 404 Not Found");
    ck_assert_str_eq(json_member_str(o, "type", NULL), "error");
    ck_assert_str_eq(json_member_str(o, "error", "type"), "not_found_error");
    ck_assert_ptr_nonnull(strstr(json_member_str(o, "error", "message"), "/nope"));
    json_object_put(o);
}
END_TEST

START_TEST(unknown_openai_route_is_404_in_openai_shape)
{
    json_object *o = run("GET", "/openai/v1/nothing", NULL);
    ck_assert_str_eq(status_line(), "Status: 404 Not Found");
    ck_assert_ptr_nonnull(json_member_str(o, "error", "message"));
    ck_assert_str_eq(json_member_str(o, "error", "code"), "not_found");
    json_object_put(o);
}
END_TEST

START_TEST(wrong_method_is_405)
{
    json_object *o = run("GET", "/api/v1/messages", NULL);
    ck_assert_str_eq(status_line(), "Status: 405 Method Not Allowed");
    ck_assert_str_eq(json_member_str(o, "error", "type"), "invalid_request_error");
    json_object_put(o);
}
END_TEST

START_TEST(head_is_answered_by_get_routes)
{
    json_object *o = run("HEAD", "/health", NULL);
    ck_assert_str_eq(status_line(), "Status: 200 OK");
    json_object_put(o);
}
END_TEST

START_TEST(body_over_cap_is_413_in_the_routes_shape)
{
    static char big[2048];
    memset(big, 'x', 1500);
    big[1500] = '\0';
    json_object *o = run("POST", "/api/v1/messages", big);
    ck_assert_str_eq(status_line(), "Status: 413 Payload Too Large");
    ck_assert_str_eq(json_member_str(o, "error", "type"), "request_too_large");
    ck_assert_ptr_nonnull(strstr(json_member_str(o, "error", "message"), "REQUEST_MAX_BYTES"));
    json_object_put(o);

    o = run("POST", "/openai/v1/chat/completions", big);
    ck_assert_str_eq(status_line(), "Status: 413 Payload Too Large");
    ck_assert_str_eq(json_member_str(o, "error", "code"), "request_too_large");
    json_object_put(o);
}
END_TEST

START_TEST(body_at_cap_reaches_the_handler)
{
    static char big[1025];
    memset(big, 'x', 1024);
    big[1024] = '\0';
    json_object *o = run("POST", "/api/v1/messages", big);
    ck_assert_str_eq(status_line(), "Status: 200 OK");
    json_object *v;
    ck_assert(json_object_object_get_ex(o, "body", &v));
    ck_assert_int_eq(json_object_get_int(v), 1024);
    json_object_put(o);
}
END_TEST

START_TEST(test_routes_are_hidden_unless_enabled)
{
    json_object *o = run("GET", "/_test/x", NULL);
    ck_assert_str_eq(status_line(), "Status: 404 Not Found");
    json_object_put(o);
    install_config("1024", "true");
    o = run("GET", "/_test/x", NULL);
    ck_assert_str_eq(status_line(), "Status: 200 OK");
    json_object_put(o);
}
END_TEST

START_TEST(handler_that_sends_nothing_yields_500)
{
    json_object *o = run("GET", "/silent", NULL);
    ck_assert_str_eq(status_line(), "Status: 500 Internal Server Error");
    json_object_put(o);
}
END_TEST

START_TEST(every_response_carries_a_request_id)
{
    json_object *o = run("GET", "/health", NULL);
    ck_assert_ptr_nonnull(strstr(mio.out.data, "\r\nX-Request-Id: "));
    json_object_put(o);
}
END_TEST

START_TEST(shape_for_unmatched_paths)
{
    ck_assert_int_eq(ars_router_shape_for_path("/openai/claude/v1/x"), ARS_SHAPE_OPENAI);
    ck_assert_int_eq(ars_router_shape_for_path("/api/v1/x"), ARS_SHAPE_ANTHROPIC);
    ck_assert_int_eq(ars_router_shape_for_path("/admin/api/x"), ARS_SHAPE_PLAIN);
}
END_TEST

/* Test cases a full run makes (check/unit/plan.h). */
#define UNIT_TEST_PLAN 12

int main(void)
{
    Suite *s = suite_create("router");
    TCase *tc = tcase_create("dispatch");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, matches_literal_and_parameter_routes);
    tcase_add_test(tc, query_string_does_not_affect_routing);
    tcase_add_test(tc, unknown_route_is_404_in_anthropic_shape);
    tcase_add_test(tc, unknown_openai_route_is_404_in_openai_shape);
    tcase_add_test(tc, wrong_method_is_405);
    tcase_add_test(tc, head_is_answered_by_get_routes);
    tcase_add_test(tc, body_over_cap_is_413_in_the_routes_shape);
    tcase_add_test(tc, body_at_cap_reaches_the_handler);
    tcase_add_test(tc, test_routes_are_hidden_unless_enabled);
    tcase_add_test(tc, handler_that_sends_nothing_yields_500);
    tcase_add_test(tc, every_response_carries_a_request_id);
    tcase_add_test(tc, shape_for_unmatched_paths);
    suite_add_tcase(s, tc);
    return ars_check_run(s, UNIT_TEST_PLAN);
}
