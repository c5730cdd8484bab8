/* Incremental parser for text/event-stream (the WHATWG "server-sent events" format) as
 * lcmctl reads it from GET /api/v1/events: feed it bytes as they arrive, it calls back once
 * per complete event and remembers the last event id for a resume with Last-Event-ID. */
#ifndef LCMCTL_SSE_H
#define LCMCTL_SSE_H

#include <stddef.h>

struct lcmctl_sse_event {
    const char *id;      /* last event id seen so far ("" if none) */
    const char *event;   /* event type ("message" when the event named none) */
    const char *data;    /* data lines joined with '\n' */
    long retry_ms;       /* last "retry:" value, -1 if none */
};

/* Returns 0 to continue, nonzero to stop the parse (lcmctl_sse_feed then returns it). */
typedef int (*lcmctl_sse_cb)(const struct lcmctl_sse_event *ev, void *ud);

struct lcmctl_sse {
    lcmctl_sse_cb cb;
    void *ud;
    char *line;          /* current partial line */
    size_t line_len, line_cap;
    char *data;          /* data buffer of the event being built */
    size_t data_len, data_cap;
    char event[128];
    char id[256];        /* the id buffer: persists across events, as the spec says */
    char last_id[256];   /* the id of the last dispatched event: what a resume sends */
    long retry_ms;
    int skip_lf;         /* the previous chunk ended with '\r': a leading '\n' belongs to it */
    int has_data;
};

void lcmctl_sse_init(struct lcmctl_sse *p, lcmctl_sse_cb cb, void *ud);
/* Feeds n bytes. Returns 0, the callback's nonzero value, or -1 when out of memory or when a
 * line exceeds 4 MiB (a broken or hostile server). */
int lcmctl_sse_feed(struct lcmctl_sse *p, const char *buf, size_t n);
/* Forgets the partial event (after a disconnect); the id buffer goes back to last_id, so
 * an event cut off mid-way is asked for again. */
void lcmctl_sse_reset(struct lcmctl_sse *p);
void lcmctl_sse_free(struct lcmctl_sse *p);

#endif
