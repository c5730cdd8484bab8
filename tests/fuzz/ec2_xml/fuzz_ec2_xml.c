/* Fuzz target for the aws plugin's XML readers (plugins/aws/aws_xml.c): any bytes an EC2 or
 * CloudWatch endpoint might send go through the parser and every response reader, which must
 * neither crash, leak, nor return pointers outside the document. libFuzzer entry point; the
 * replay driver (replay.c) runs the corpus as an ordinary ctest. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "aws_xml.h"

static volatile size_t sink;

static void touch(const char *s)
{
    if (s)
        sink += strlen(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct aws_doc *d = NULL;
    char err[128];
    if (aws_xml_parse((const char *)data, size, &d, err, sizeof err) != 0)
        return 0;
    const char *code, *msg;
    if (aws_xml_error(d, &code, &msg) == 0) {
        touch(code);
        touch(msg);
    }
    struct lcm_cloud_instances in;
    if (aws_xml_instances(d, &in) == 0) {
        for (size_t i = 0; i < in.n; i++) {
            touch(in.v[i].instance_id);
            touch(in.v[i].state_name);
            touch(in.v[i].launch_time);
            for (size_t k = 0; k < in.v[i].tags.n; k++) {
                touch(in.v[i].tags.v[k].key);
                touch(in.v[i].tags.v[k].value);
            }
        }
        touch(in.next_token);
    }
    struct lcm_cloud_changes ch;
    if (aws_xml_changes(d, &ch) == 0)
        for (size_t i = 0; i < ch.n; i++)
            sink += (size_t)ch.v[i].current + strlen(ch.v[i].instance_id);
    struct lcm_cloud_images im;
    if (aws_xml_images(d, &im) == 0)
        for (size_t i = 0; i < im.n; i++) {
            touch(im.v[i].image_id);
            touch(im.v[i].creation_date);
        }
    struct lcm_cloud_datapoints dp;
    const char *next;
    if (aws_xml_datapoints(d, &dp, &next) == 0) {
        for (size_t i = 0; i < dp.n; i++)
            sink += (size_t)dp.v[i].at_ms;
        touch(next);
    }
    sink += (size_t)aws_xml_return_true(d, "CreateTagsResponse");
    aws_doc_free(d);
    return 0;
}
