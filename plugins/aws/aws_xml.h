/* XML side of the aws plugin: expat builds a small bounded tree in an arena, and the readers
 * below turn EC2 / CloudWatch Query API responses into the SPI result types. Everything a
 * reader returns lives in the document's arena (freed with aws_doc_free). Fuzzed by
 * tests/fuzz/ec2_xml. */
#ifndef AWS_XML_H
#define AWS_XML_H

#include <stddef.h>

#include <lcm/spi.h>

/* Bounds on what a response may build: a hostile or broken endpoint gets an error, never
 * unbounded memory or recursion. */
#define AWS_XML_MAX_DEPTH 64
#define AWS_XML_MAX_NODES 500000

struct aws_arena;
struct aws_node {
    const char *name;            /* local name (namespace prefix stripped) */
    char *text;                  /* character data directly inside, NUL-terminated, "" if none */
    size_t text_len;
    struct aws_node *parent, *child, *last, *next;
};
struct aws_doc {
    struct aws_arena *arena;
    struct aws_node *root;
};

/* Arena: every allocation freed at once. */
struct aws_arena *aws_arena_new(void);
void aws_arena_free(struct aws_arena *a);
void *aws_arena_alloc(struct aws_arena *a, size_t n);   /* zeroed; NULL on OOM */
char *aws_arena_strdup(struct aws_arena *a, const char *s);

/* Parses buf (need not be NUL-terminated). Returns 0 and *out, or -1 with err filled (no
 * DOCTYPE/entities, depth and node limits enforced). */
int aws_xml_parse(const char *buf, size_t len, struct aws_doc **out, char *err, size_t errlen);
void aws_doc_free(struct aws_doc *d);

/* First child element of n named name, or NULL; text of that child, or NULL. */
struct aws_node *aws_xml_child(const struct aws_node *n, const char *name);
const char *aws_xml_text(const struct aws_node *n, const char *name);
/* Depth-first search for the first element named name under n (n included). */
struct aws_node *aws_xml_find(const struct aws_node *n, const char *name);

/* An AWS error document (EC2 <Response><Errors><Error>, Query <ErrorResponse><Error>):
 * returns 0 with *code / *message (message may be NULL) or -1 when it is not one. */
int aws_xml_error(const struct aws_doc *d, const char **code, const char **message);

/* RunInstancesResponse (instancesSet) and DescribeInstancesResponse (reservationSet → all
 * instances flattened; nextToken). */
int aws_xml_instances(struct aws_doc *d, struct lcm_cloud_instances *out);
/* Start/Stop/TerminateInstancesResponse. */
int aws_xml_changes(struct aws_doc *d, struct lcm_cloud_changes *out);
/* DescribeImagesResponse, sorted newest CreationDate first (ties: image id). */
int aws_xml_images(struct aws_doc *d, struct lcm_cloud_images *out);
/* CloudWatch GetMetricDataResponse: the first MetricDataResults member, oldest first. Also
 * returns the NextToken, if any, in *next (may be NULL). */
int aws_xml_datapoints(struct aws_doc *d, struct lcm_cloud_datapoints *out, const char **next);
/* A <root> response (e.g. CreateTagsResponse) whose <return> is true or absent: 0. */
int aws_xml_return_true(const struct aws_doc *d, const char *root);

enum lcm_instance_state aws_state_from_name(const char *name);
/* "2024-01-02T03:04:05(.mmm)Z" → epoch ms; -1 when it is not that shape. */
long long aws_parse_iso8601_ms(const char *s);

#endif
