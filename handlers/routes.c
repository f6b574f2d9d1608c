/* The route table: one line per route. GET routes also answer HEAD. */
#include "handlers.h"

const struct ars_route ars_routes[] = {
    { "GET", "/health", ars_handle_health, ARS_SHAPE_PLAIN, ARS_ROUTE_NO_BODY },
    { "GET", "/metrics", ars_handle_metrics, ARS_SHAPE_PLAIN, ARS_ROUTE_NO_BODY },
    { "GET", "/", ars_handle_probe, ARS_SHAPE_ANTHROPIC, ARS_ROUTE_NO_BODY },
    { "GET", "/api", ars_handle_probe, ARS_SHAPE_ANTHROPIC, ARS_ROUTE_NO_BODY },
    { "GET", "/api/", ars_handle_probe, ARS_SHAPE_ANTHROPIC, ARS_ROUTE_NO_BODY },
    { "POST", "/api/v1/messages", ars_handle_messages, ARS_SHAPE_ANTHROPIC, ARS_ROUTE_RELAY },
    { "POST", "/claude/v1/messages", ars_handle_messages, ARS_SHAPE_ANTHROPIC, ARS_ROUTE_RELAY },
    { "POST", "/v1/messages", ars_handle_messages, ARS_SHAPE_ANTHROPIC, ARS_ROUTE_RELAY },
    { "POST", "/api/claude/v1/messages", ars_handle_messages, ARS_SHAPE_ANTHROPIC, ARS_ROUTE_RELAY },
    { "POST", "/api/v1/messages/count_tokens", ars_handle_count_tokens, ARS_SHAPE_ANTHROPIC, ARS_ROUTE_RELAY },
    { "POST", "/claude/v1/messages/count_tokens", ars_handle_count_tokens, ARS_SHAPE_ANTHROPIC, ARS_ROUTE_RELAY },
    { "POST", "/v1/messages/count_tokens", ars_handle_count_tokens, ARS_SHAPE_ANTHROPIC, ARS_ROUTE_RELAY },
    { "POST", "/openai/claude/v1/chat/completions", ars_handle_chat_completions, ARS_SHAPE_OPENAI, ARS_ROUTE_RELAY },
    { "POST", "/openai/v1/chat/completions", ars_handle_chat_completions, ARS_SHAPE_OPENAI, ARS_ROUTE_RELAY },
    { "GET", "/openai/claude/v1/models", ars_handle_openai_models, ARS_SHAPE_OPENAI, ARS_ROUTE_NO_BODY },
    { "GET", "/openai/v1/models", ars_handle_openai_models, ARS_SHAPE_OPENAI, ARS_ROUTE_NO_BODY },
    { "GET", "/api/v1/models", ars_handle_models, ARS_SHAPE_ANTHROPIC, ARS_ROUTE_NO_BODY },
    { "GET", "/claude/v1/models", ars_handle_models, ARS_SHAPE_ANTHROPIC, ARS_ROUTE_NO_BODY },
    { "GET", "/v1/models", ars_handle_models, ARS_SHAPE_ANTHROPIC, ARS_ROUTE_NO_BODY },
    { "GET", "/_test/sse", ars_handle_test_sse, ARS_SHAPE_PLAIN, ARS_ROUTE_TEST_ONLY | ARS_ROUTE_NO_BODY },
    { "GET", "/_test/sleep", ars_handle_test_sleep, ARS_SHAPE_PLAIN, ARS_ROUTE_TEST_ONLY | ARS_ROUTE_NO_BODY },
    { "POST", "/_test/echo", ars_handle_test_sleep, ARS_SHAPE_ANTHROPIC, ARS_ROUTE_TEST_ONLY },
};

const size_t ars_routes_count = sizeof(ars_routes) / sizeof(ars_routes[0]);
