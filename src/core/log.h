/* log.h - leveled logging to stderr, one line per call, safe across threads.
 * LOG_LEVEL (DEBUG, INFO, WARNING, ERROR) filters. Lines look like
 * "2026-11-23T10:00:00.123Z INFO message". */
#ifndef SMP_LOG_H
#define SMP_LOG_H

typedef enum { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_OFF } log_level;

void log_set_level(log_level lv);
log_level log_get_level(void);
/* Parse "DEBUG"/"INFO"/"WARNING"/"WARN"/"ERROR"/"CRITICAL"/"OFF" (any case); -1 if unknown. */
int log_parse_level(const char *s);
void log_msg(log_level lv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
