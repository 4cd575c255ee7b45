/* cli_whisper.h - the Whisper engine's command-line tools, dispatched from
 * cli_engine.c:
 *   mel FILE --out OUT.f32 [--model M] [--threads N]
 *       log-mel of any audio file, [n_mels][3000] float32 LE (first 3000 frames)
 *   eval WHISPER_MODEL --audio FILE --tokens IDS --logits OUT.f32 [--threads N]
 *       teacher-forced decoder logits [positions][n_vocab] float32 LE
 *   transcribe MODEL FILE [--language L] [--task translate] [--json] [--threads N]
 *   mkwhisper --shape tiny64|tiny|base|small --type f16|q8_0|q5_0|q4_0 OUT.bin [--seed S]
 *       random-weight model in whisper.cpp's ggml .bin format
 * MODEL is a path, or a size name looked up as $MODELS_DIR/ggml-<name>.bin.
 * Each returns the process exit status: 0, 2 for a usage error, 1 for a
 * runtime error (message on stderr). */
#ifndef SMP_CLI_WHISPER_H
#define SMP_CLI_WHISPER_H

#include <stdbool.h>
#include <stdio.h>

bool cli_whisper_has(const char *cmd); /* mel, transcribe, mkwhisper */
int cli_whisper_main(const char *cmd, int argc, char **argv);
/* True when the eval arguments name a Whisper model file (by its magic). */
bool cli_whisper_is_eval(int argc, char **argv);
int cli_whisper_eval(int argc, char **argv);
void cli_whisper_usage(FILE *f);

#endif
