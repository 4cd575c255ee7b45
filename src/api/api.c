/* api.c - registers every route family with the router. */
#include "api/api.h"

void api_register_all(void) {
    api_health_register();
    api_analytics_register();
}
