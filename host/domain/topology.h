/* Just enough of a CML topology YAML to derive what a definition needs: each node's label,
 * node_definition and tags, hence node_count, the required node definitions, and the port
 * template (every tag `proto:port` with proto in serial/vnc/ssh/telnet/tcp/http/https gives
 * a port named `<label>_<proto>`). Not a YAML parser: it reads the block style CML exports. */
#ifndef LCM_DOMAIN_TOPOLOGY_H
#define LCM_DOMAIN_TOPOLOGY_H

#include <stddef.h>
#include <stdint.h>

#include "derr.h"

enum lcm_proto {
    LCM_PROTO_SERIAL, LCM_PROTO_VNC, LCM_PROTO_SSH, LCM_PROTO_TELNET, LCM_PROTO_TCP,
    LCM_PROTO_HTTP, LCM_PROTO_HTTPS, LCM_PROTO__COUNT
};
const char *lcm_proto_name(int proto);
int lcm_proto_parse(const char *s);        /* -1 when not one of the seven */

#define LCM_TOPO_MAX_NODES 1024
#define LCM_TOPO_MAX_TAGS 32
#define LCM_TOPO_STR 128

struct lcm_topo_node {
    char label[LCM_TOPO_STR];
    char node_definition[LCM_TOPO_STR];
    char tags[LCM_TOPO_MAX_TAGS][LCM_TOPO_STR];
    int ntags;
};

struct lcm_topology {
    struct lcm_topo_node *nodes;   /* owned */
    int nnodes;
};

/* Returns 0, or LCM_DERR_INVALID (field "topology") when there is no nodes list or a node
 * lacks a label. */
int lcm_topology_parse(const char *yaml, struct lcm_topology *out, struct lcm_derr *err);
void lcm_topology_free(struct lcm_topology *t);

/* The port name for a node label and protocol: label lower-cased, characters other than
 * [a-z0-9_.-] replaced by '-', then "_<proto>" ("PC", vnc → "pc_vnc"). */
void lcm_port_name(const char *label, int proto, char *buf, size_t len);

#endif
