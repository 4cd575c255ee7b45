/* auth.h - API keys.
 *
 * Keys come from API_KEYS (comma-separated). When it is unset, a random key is
 * generated on first start, printed once, and kept in DATA_DIR/api_key with
 * mode 0600; later starts reuse it silently. Keys are compared in constant
 * time (every configured key is compared, whatever matched). */
#ifndef SMP_AUTH_H
#define SMP_AUTH_H

#include <stddef.h>

#include "core/config.h"

int auth_init(const config *c, char *err, size_t errlen);
void auth_free(void);
/* x_api_key and authorization may be NULL. Returns 0, -SMP_E_AUTH_MISSING or
 * -SMP_E_AUTH_INVALID. */
int auth_check(const char *x_api_key, const char *authorization);

#endif
