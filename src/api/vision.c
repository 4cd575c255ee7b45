/* vision.c - the vision routes (being written). */
#include "api/api.h"

void api_vision_register(void) {}
