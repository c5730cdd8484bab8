/* The lcmd application context: everything the loop owns, shared by the API routes and the
 * controllers. One per process; created and torn down by main.c. Fields are public so that
 * each part takes what it needs; ownership stays with main.c. */
#ifndef LCM_APP_H
#define LCM_APP_H

#include <time.h>

#include "core/embedded.h"

struct event;
struct event_base;
struct lcm_auth;
struct lcm_config;
struct lcm_httpc;
struct lcm_httpd;
struct lcm_jwks;
struct lcm_metrics;
struct lcm_plugins;
struct lcm_policy_engine;
struct lcm_redis;
struct lcm_store;
struct lcm_api;
struct lcm_net;
struct lcm_ctl;
struct lcm_controllers;

struct lcm_app {
    struct lcm_config *cfg;
    struct event_base *base;
    struct lcm_metrics *metrics;
    struct lcm_auth *auth;
    struct lcm_jwks *jwks;            /* NULL unless OIDC is configured */
    struct lcm_redis *redis;          /* command connection */
    struct lcm_store *store;          /* event store + read models */
    struct lcm_httpd *httpd;
    struct lcm_httpc *httpc;
    struct lcm_plugins *plugins;
    struct lcm_policy_engine *policy;
    struct lcm_api *api;              /* resource routes (host/api) */
    struct lcm_net *net;              /* SSE, CloudEvents in and out (host/net) */
    struct lcm_ctl *ctl;              /* controllers + leader lease (host/ctl) */
    struct lcm_controllers *controllers; /* controller instances (host/ctl/controllers.h) */
    struct lcm_embedded_redis embedded;
    struct event *sig_term, *sig_int, *sig_hup;
    time_t started;
    int store_ready;                  /* read models loaded */
    int stopping;
};

#endif
