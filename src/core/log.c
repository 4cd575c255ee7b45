/* log.c - see log.h. Each line is formatted into a stack buffer and written
 * with one write(2) so lines from different threads never interleave. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static volatile log_level cur_level = LOG_INFO;
static const char *names[] = {"DEBUG", "INFO", "WARNING", "ERROR"};

void log_set_level(log_level lv) { cur_level = lv; }
log_level log_get_level(void) { return cur_level; }

int log_parse_level(const char *s) {
    if (!strcasecmp(s, "DEBUG")) return LOG_DEBUG;
    if (!strcasecmp(s, "INFO")) return LOG_INFO;
    if (!strcasecmp(s, "WARNING") || !strcasecmp(s, "WARN")) return LOG_WARN;
    if (!strcasecmp(s, "ERROR") || !strcasecmp(s, "CRITICAL")) return LOG_ERROR;
    if (!strcasecmp(s, "OFF")) return LOG_OFF;
    return -1;
}

void log_msg(log_level lv, const char *fmt, ...) {
    if (lv < cur_level || lv >= LOG_OFF) return;
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, names[lv]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2) len = sizeof line - 2;
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
