/* audio.c - the audio routes (being written). */
#include "api/api.h"

void api_audio_register(void) {}
