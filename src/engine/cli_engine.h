/* cli_engine.h - the engine's command-line tools, dispatched from main.c:
 *   run MODEL "prompt" [-n N] [--temp T] [--seed S] [--threads N] [--top-k K] [--top-p P]
 *   info MODEL
 *   tokenize MODEL "text" [--no-bos]
 *   eval MODEL --tokens 1,2,3 --logits OUT.f32 [--threads N]
 *   quantize IN OUT TYPE [--threads N]
 *   mkmodel --shape NAME --type TYPE OUT [--seed S] [--vocab FILE] [--threads N]
 * MODEL is a file path, or a name looked up as $MODELS_DIR/<name>.gguf
 * (MODELS_DIR defaults to "models"). Each command returns the process exit
 * status: 0, 2 for a usage error, 1 for a runtime error (message on stderr). */
#ifndef SMP_CLI_ENGINE_H
#define SMP_CLI_ENGINE_H

#include <stdbool.h>
#include <stdio.h>

/* True if cmd is one of the commands above. */
bool cli_engine_has(const char *cmd);
/* Run cmd with its arguments (argv[0] is the first argument after cmd). */
int cli_engine_main(const char *cmd, int argc, char **argv);
/* The command lines for the top-level usage text. */
void cli_engine_usage(FILE *f);

#endif
