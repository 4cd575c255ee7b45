/* analytics.h - recent-request store behind /analytics/{stats,errors,alerts}.
 *
 * Two bounded rings, each behind its own mutex: the last ANALYTICS_MAX_REQUESTS
 * requests (time, method, route template, status, duration) and the last
 * ANALYTICS_MAX_ERRORS errors (plus the error text). Entries older than the
 * retention window are ignored and dropped. Stats are computed on demand by
 * one pass over the ring, so recording stays O(1): a lock, a copy, an unlock. */
#ifndef SMP_ANALYTICS_H
#define SMP_ANALYTICS_H

#include <jansson.h>

#define ANALYTICS_MAX_REQUESTS 10000
#define ANALYTICS_MAX_ERRORS 1000

int analytics_init(int retention_hours);
void analytics_free(void);

/* Record one finished request. status >= 400 counts as an error; error may be
 * NULL (then the HTTP reason is stored). now is wall-clock seconds (0: now). */
void analytics_record(const char *method, const char *route, int status, double seconds, const char *error,
                      double now);

/* The "metrics" object of /analytics/stats for the last since_minutes (<= 0:
 * the whole retention window): total_requests, total_errors, error_rate
 * (percent), avg_response_time (s), requests_per_minute, status_distribution,
 * endpoint_breakdown, retention_hours. New reference. */
json_t *analytics_stats(int since_minutes);
/* Newest first, at most limit: [{timestamp, method, path, status, error}]. */
json_t *analytics_errors(int limit);
/* Alerts over the last 5 minutes; the whole /analytics/alerts body:
 * {status:"success"|"warning", alerts:[{type,severity,message,value,threshold}],
 *  alert_count, thresholds:{error_rate, response_time}}.
 * high_error_rate fires when rate > error_rate_threshold (a fraction) with at
 * least 10 requests; high_response_time when avg > response_time_threshold. */
json_t *analytics_alerts(double error_rate_threshold, double response_time_threshold);
/* {status:"healthy", requests_tracked, errors_tracked, retention_hours} */
json_t *analytics_health(void);

#endif
