/* Route handlers and the route table. */
#ifndef ARS_HANDLERS_H
#define ARS_HANDLERS_H

#include <stddef.h>

#include "request.h"
#include "router.h"

extern const struct ars_route ars_routes[];
extern const size_t ars_routes_count;

void ars_handle_health(struct ars_request *req);
void ars_handle_metrics(struct ars_request *req);
void ars_handle_models(struct ars_request *req);
void ars_handle_messages(struct ars_request *req);
void ars_handle_count_tokens(struct ars_request *req);
void ars_handle_chat_completions(struct ars_request *req);
void ars_handle_openai_models(struct ars_request *req);
void ars_handle_probe(struct ars_request *req);
void ars_handle_test_sse(struct ars_request *req);
void ars_handle_test_sleep(struct ars_request *req);

#endif
